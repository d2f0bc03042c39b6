/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_SERIAL8250_H
#define GODWIT_SERIAL8250_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit/util.h"

/*
 * A 16550A UART (the PC's COM1: I/O 0x3F8, 8 registers, IRQ 4), with no KVM in
 * it: the VMM routes port I/O to serial8250__io_read/io_write and gives the
 * model two callbacks, one for the IRQ line and one for console output.
 *
 * The model, and where it departs from the chip (docs in serial8250.c):
 * - The transmitter is infinitely fast: a THR write reaches write_out at once
 *   and THRE/TEMT never clear.
 * - Received bytes are never dropped: input waits in a 64 KiB buffer behind the
 *   16-byte FIFO, and push_input takes only what fits (the caller retries).
 * - The IRQ output is gated by MCR.OUT2, as on a PC, and is off in loopback.
 *
 * Locking: every entry point takes the device's own mutex (vCPU threads and the
 * input thread call in concurrently). The callbacks run with that mutex held, so
 * they must not call back into the device; holding it keeps IRQ level changes
 * and output bytes in order.
 */

#define SERIAL8250_NR_REGS     8
#define SERIAL8250_FIFO_SIZE   16
#define SERIAL8250_RX_BUF_SIZE (64 * 1024)

/* Register offsets from the base port. */
#define UART_RX  0 /* in: receive buffer (DLAB=0) */
#define UART_TX  0 /* out: transmit holding (DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1 /* interrupt enable (DLAB=0) */
#define UART_DLM 1 /* divisor latch high (DLAB=1) */
#define UART_IIR 2 /* in: interrupt identification */
#define UART_FCR 2 /* out: FIFO control */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI  0x01 /* received data available */
#define UART_IER_THRI 0x02 /* transmit holding register empty */
#define UART_IER_RLSI 0x04 /* receiver line status */
#define UART_IER_MSI  0x08 /* modem status */

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI    0x00
#define UART_IIR_THRI   0x02
#define UART_IIR_RDI    0x04
#define UART_IIR_RLSI   0x06
#define UART_IIR_CTI    0x0c /* character timeout (FIFO mode) */
#define UART_IIR_FIFO   0xc0 /* FIFOs enabled */

#define UART_FCR_ENABLE_FIFO 0x01
#define UART_FCR_CLEAR_RCVR  0x02
#define UART_FCR_CLEAR_XMIT  0x04
#define UART_FCR_DMA_SELECT  0x08
#define UART_FCR_TRIGGER_MASK 0xc0

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR   0x01 /* data ready */
#define UART_LSR_OE   0x02 /* overrun */
#define UART_LSR_PE   0x04
#define UART_LSR_FE   0x08
#define UART_LSR_BI   0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_FIFOE 0x80
#define UART_LSR_ERRORS (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI | UART_LSR_FIFOE)

#define UART_MSR_DCTS  0x01
#define UART_MSR_DDSR  0x02
#define UART_MSR_TERI  0x04
#define UART_MSR_DDCD  0x08
#define UART_MSR_DELTA 0x0f
#define UART_MSR_CTS   0x10
#define UART_MSR_DSR   0x20
#define UART_MSR_RI    0x40
#define UART_MSR_DCD   0x80

struct serial8250_ops {
	/* Raise (1) or lower (0) the IRQ line; called only when the level changes. */
	void (*set_irq)(void *opaque, int level);
	/* Bytes the guest transmitted. */
	void (*write_out)(void *opaque, const uint8_t *buf, size_t len);
};

/*
 * Everything the device holds, for migration: plain data, no pointers. The
 * receive buffer is stored in order from its first byte (rx[0..rx_len)), so
 * where the ring happened to start on the source does not matter.
 */
struct serial8250_state {
	uint8_t ier;
	uint8_t lcr;
	uint8_t mcr;
	uint8_t lsr; /* as the guest would read it now */
	uint8_t msr;
	uint8_t scr;
	uint8_t dll;
	uint8_t dlm;
	uint8_t fcr;	      /* FIFO enable, DMA mode and trigger bits as written */
	uint8_t thr_ipending; /* 0/1: THR-empty interrupt latched, not yet acknowledged */
	uint8_t rbr;	      /* last byte read from RBR (what an empty RBR reads back) */
	uint32_t rx_len;
	uint8_t rx[SERIAL8250_RX_BUF_SIZE];
};

struct serial8250 {
	pthread_mutex_t lock;
	const struct serial8250_ops *ops;
	void *opaque;
	int irq_level; /* last level given to set_irq */

	uint8_t ier;
	uint8_t lcr;
	uint8_t mcr;
	uint8_t lsr_errors; /* sticky LSR error bits; DR/THRE/TEMT are derived */
	uint8_t msr;
	uint8_t scr;
	uint8_t dll;
	uint8_t dlm;
	uint8_t fcr;
	bool thr_ipending;
	uint8_t rbr;

	/* Received bytes, a ring: the head 16 of them are the FIFO the guest sees. */
	uint32_t rx_head;
	uint32_t rx_len;
	uint8_t rx[SERIAL8250_RX_BUF_SIZE];
};

/* Puts the device in its reset state; both ops are required. 0 or -errno. */
int __must_check serial8250__init(struct serial8250 *s, const struct serial8250_ops *ops,
				  void *opaque);
void serial8250__exit(struct serial8250 *s);

/* Port I/O at @offset (0..7) from the base; other offsets read 0xff and ignore writes. */
void serial8250__io_read(struct serial8250 *s, unsigned int offset, uint8_t *val);
void serial8250__io_write(struct serial8250 *s, unsigned int offset, uint8_t val);

/*
 * Offers bytes received from the outside; returns how many were taken (possibly
 * 0: the buffer is full, or the UART is in loopback, where the line is cut off).
 * The caller keeps the rest and retries later: nothing is ever dropped.
 */
size_t serial8250__push_input(struct serial8250 *s, const uint8_t *buf, size_t len);
/* How many bytes push_input would take now. */
size_t serial8250__input_room(struct serial8250 *s);

void serial8250__save(struct serial8250 *s, struct serial8250_state *st);
/*
 * Replaces the device's state with @st, which comes from a migration stream and
 * is checked first: -EINVAL (and the device untouched) if it is not a state this
 * model can be in. The IRQ line follows the new state.
 */
int __must_check serial8250__load(struct serial8250 *s, const struct serial8250_state *st);

#endif
