/* A line server with a bug behind a protocol step: a client must log in with a token, and only
 * then does `SET` look at its number; one number crashes the server. Random bytes never get
 * there; coverage does, one matched byte at a time when the comparisons are split
 * (AFL_LLVM_LAF_ALL=1).
 *
 *   HELLO            -> OK hello
 *   LOGIN <token>    -> OK welcome | ERR bad token
 *   SET <n>          -> OK set <n> | ERR login first
 *   QUIT             -> BYE, and the server closes
 *   anything else    -> ERR unknown, and the server closes
 *
 * Usage: token-server PORT (or $PORT). One thread per connection, so that a crash in any of
 * them ends the process, as it would a real server's. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

static const char TOKEN[] = "k3y-7e";

static void reply(int fd, const char *text) {
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n <= 0) return;
        done += (size_t)n;
    }
}

/* One command; returns 0 when the connection should end. */
static int command(int fd, char *line, int *logged_in) {
    char out[128];
    if (strcmp(line, "HELLO") == 0) {
        reply(fd, "OK hello\n");
    } else if (strncmp(line, "LOGIN ", 6) == 0) {
        if (strcmp(line + 6, TOKEN) == 0) {
            *logged_in = 1;
            reply(fd, "OK welcome\n");
        } else {
            reply(fd, "ERR bad token\n");
        }
    } else if (strncmp(line, "SET ", 4) == 0) {
        if (!*logged_in) {
            reply(fd, "ERR login first\n");
            return 1;
        }
        long n = strtol(line + 4, NULL, 10);
#ifndef NO_BUG /* built with -DNO_BUG, for measuring rates: the same server, correct */
        if (n == 4242) {
            /* The bug: a value nobody tested. */
            volatile int *nowhere = NULL;
            *nowhere = (int)n;
        }
#endif
        snprintf(out, sizeof out, "OK set %ld\n", n);
        reply(fd, out);
    } else if (strcmp(line, "QUIT") == 0) {
        reply(fd, "BYE\n");
        return 0;
    } else {
        /* A client that speaks another protocol gets one answer: what it sends next is not
         * worth reading (and answering line by line could fill a buffer nobody reads). */
        reply(fd, "ERR unknown\n");
        return 0;
    }
    return 1;
}

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    char buf[4096];
    size_t have = 0;
    int logged_in = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
        char *start = buf, *nl;
        int open = 1;
        while (open && (nl = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
            *nl = '\0';
            if (nl > start && nl[-1] == '\r') nl[-1] = '\0';
            open = command(fd, start, &logged_in);
            start = nl + 1;
        }
        if (!open) {
            /* Ending a connection the client may still be writing to: say so with a FIN, and
             * read what comes until the client closes too, so that close() sends no RST that
             * would throw away the answers not yet read. */
            shutdown(fd, SHUT_WR);
            while (read(fd, buf, sizeof buf) > 0) {
            }
            break;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
        /* A line longer than the buffer is dropped whole. */
        if (have == sizeof buf - 1) have = 0;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    const char *port = argc > 1 ? argv[1] : getenv("PORT");
    if (!port) {
        fprintf(stderr, "usage: token-server PORT\n");
        return 2;
    }
    /* A client gone before its answer is written is its own business, not the server's end. */
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 128) != 0) {
        perror("token-server");
        return 1;
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(long)c) != 0) {
            close(c);
            continue;
        }
        pthread_detach(t);
    }
}
