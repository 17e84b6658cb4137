/*
 * A minimal epoll echo server in C, the yardstick for lesson 3's mio loop.
 *
 *   gcc -O2 -o /tmp/epoll_echo crates/bench/c/epoll_echo.c
 *   cargo run -p bench --release -- c10k --c-epoll /tmp/epoll_echo
 *
 * Listens on 127.0.0.1 (port from argv[1], default 0), prints
 * "c-epoll listening on 127.0.0.1:PORT", then serves forever on one thread.
 * Level-triggered, one read and one write per readiness event. It is
 * minimal on purpose and cuts corners the Rust server does not: a write
 * that the socket only partly takes drops the rest (fine for 512-byte
 * messages, wrong in general), and there is no connection limit, no idle
 * timeout, no back-pressure. What it measures is the floor: the cost of
 * epoll_wait + read + write with nothing else around them.
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKLOG 4096
#define MAX_EVENTS 1024
/* Level-triggered by default; -DEDGE builds the edge-triggered variant,
 * which reads until a short read, like the Rust loop. */
#ifdef EDGE
#define TRIGGER (EPOLLET | EPOLLRDHUP)
#else
#define TRIGGER 0
#endif

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, BACKLOG)) {
        perror("bind/listen");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &len);
    printf("c-epoll listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[MAX_EVENTS];
    static char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN | TRIGGER, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t r;
            for (;;) {
                r = read(fd, buf, sizeof buf);
                if (r > 0) (void)!write(fd, buf, (size_t)r);
                /* Level-triggered: one read per event, epoll reports the rest.
                 * Edge-triggered: read again unless that read was short. */
                if (!TRIGGER || r <= 0 || ((size_t)r < sizeof buf && !(events[i].events & EPOLLRDHUP)))
                    break;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                close(fd); /* closing also removes it from the epoll set */
            }
        }
    }
}
