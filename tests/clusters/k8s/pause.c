/* The pod sandbox's process for the test cluster (built by tests/clusters/k8s.sh into the image
 * clustrix.test/pause:1, because no registry may be asked for registry.k8s.io/pause).
 * It holds the pod's namespaces: it sleeps until SIGINT/SIGTERM and, being PID 1 when the pod shares
 * its process namespace, reaps any child that is reparented to it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction sa = {0};
    if (argc > 1) {
        fputs("usage: pause (no arguments)\n", stderr);
        return 1;
    }
    if (getpid() != 1)
        fputs("warning: pause should be the first process\n", stderr);
    sa.sa_handler = stop;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return 2;
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        return 3;
    for (;;)
        pause();
}
