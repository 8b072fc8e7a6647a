/* Runs a command with a socket at a chosen fd number, the way a supervisor passes an inherited
 * listener: with_socket KIND ADDR FD CMD [ARGS...], KIND one of listen (a listening TCP or Unix
 * stream socket), bound (bound, not listening) or udp. The socket is blocking and inheritable;
 * its bound address is printed on stderr as "with_socket: ADDR" before the exec. Exit 2 on bad
 * usage, 1 when the socket cannot be made, else whatever CMD does (127: exec failed). Used by
 * tests/test_deploy.sh for --listen-fd. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mio/mio.h>

int main(int argc, char **argv)
{
    mio_addr a;
    char text[MIO_ADDR_STRLEN];
    int fd, target;

    if (argc < 5 || mio_addr_parse(argv[2], &a) < 0 || (target = atoi(argv[3])) < 3) {
        fprintf(stderr, "usage: with_socket listen|bound|udp ADDR FD CMD [ARGS...]\n");
        return 2;
    }
    if (strcmp(argv[1], "listen") == 0)
        fd = a.u.sa.sa_family == AF_UNIX ? mio_unix_listener_bind(&a) : mio_tcp_listener_bind(&a);
    else if (strcmp(argv[1], "udp") == 0)
        fd = mio_udp_bind(&a);
    else if (strcmp(argv[1], "bound") == 0) {
        fd = socket(a.u.sa.sa_family, SOCK_STREAM, 0);
        if (fd >= 0 && bind(fd, &a.u.sa, a.len) == -1)
            fd = -errno;
    } else {
        fprintf(stderr, "with_socket: unknown kind %s\n", argv[1]);
        return 2;
    }
    if (fd < 0) {
        fprintf(stderr, "with_socket: %s: %s\n", argv[2], mio_strerror(fd));
        return 1;
    }
    if (mio_socket_local_addr(fd, &a) == 0 && mio_addr_format(&a, text, sizeof(text)) > 0)
        fprintf(stderr, "with_socket: %s\n", text);
    (void)mio_set_nonblocking(fd, false);
    if (fd != target && (dup2(fd, target) == -1 || close(fd) == -1)) {
        perror("with_socket: dup2");
        return 1;
    }
    (void)fcntl(target, F_SETFD, 0); /* inheritable */
    execvp(argv[4], argv + 4);
    perror(argv[4]);
    return 127;
}
