/* libmio umbrella header: mio's readiness core for C plus reactor, conn and pool. */
#ifndef MIO_MIO_H
#define MIO_MIO_H

#include <mio/common.h>
#include <mio/token.h>
#include <mio/interest.h>
#include <mio/event.h>
#include <mio/poll.h>
#include <mio/waker.h>
#include <mio/net.h>
#include <mio/reactor.h>
#include <mio/conn.h>
#include <mio/pool.h>

#endif
