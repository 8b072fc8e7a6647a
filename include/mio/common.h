/* libmio common definitions: export macro and the error-name function.
 * Every libmio function returns >= 0 on success and a negative errno on failure; errno itself is
 * never the error channel. */
#ifndef MIO_COMMON_H
#define MIO_COMMON_H

#include <errno.h> /* results are compared against -EAGAIN, -ENOENT, ... */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(MIO_BUILDING) && defined(__GNUC__)
#define MIO_EXTERN __attribute__((visibility("default")))
#else
#define MIO_EXTERN
#endif

#ifdef __cplusplus
#define MIO_BEGIN_DECLS extern "C" {
#define MIO_END_DECLS }
#else
#define MIO_BEGIN_DECLS
#define MIO_END_DECLS
#endif

MIO_BEGIN_DECLS

/* Names any libmio result: a negative errno gives its strerror text, >= 0 gives "success".
 * Thread-safe: the text lives in a per-thread buffer that the calling thread's next call
 * overwrites (copy it to keep it); never NULL, never freed by the caller. */
MIO_EXTERN const char *mio_strerror(int result);

MIO_END_DECLS

#endif
