/* The pool hands the user fds that come straight from accept4(SOCK_NONBLOCK|SOCK_CLOEXEC). While
 * it runs the accept callback it names that fd here, so that mio_conn_open can skip the fcntl
 * that would check O_NONBLOCK: one syscall less per connection. Per thread, so no sharing. */
#ifndef MIO_INTERNAL_CONN_HINT_H
#define MIO_INTERNAL_CONN_HINT_H

extern _Thread_local int mio__known_nonblocking_fd;

#endif
