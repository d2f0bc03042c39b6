// SPDX-License-Identifier: GPL-2.0
/*
 * 16550A UART model.
 *
 * Where it departs from the chip, and why:
 * - Transmit: a THR write goes to write_out at once. THRE and TEMT are always
 *   set, and the THR-empty interrupt comes back right after each write: the
 *   guest never waits for a baud-rate clock, and nothing ever needs a timer.
 * - Receive: input is never lost. Bytes wait in a 64 KiB buffer; the guest sees
 *   its first 16 as the FIFO (the first one in non-FIFO mode). push_input
 *   takes only what fits, and the host side retries with the rest, as a sender
 *   held back by flow control would. So no overrun from outside, ever.
 * - Character timeout: a real 16550A reports "timeout" (IIR 0x0c) when fewer
 *   bytes than the trigger level have waited for 4 character times. Here the
 *   timeout is immediate: data below the trigger level reports 0x0c at once,
 *   at or above it 0x04. A driver reads until DR clears either way, and the
 *   model stays without a timer, which keeps it deterministic for migration.
 * - Clearing the receive FIFO (FCR bit 1, or FIFO enable toggling, as the chip
 *   does) discards everything received so far, buffer included: the guest asked
 *   for it, and a partial discard would hand it a torn stream.
 * - Loopback: transmitted bytes come back into the 16-byte FIFO (1 byte with
 *   FIFOs off), with an overrun when it is full, as on the chip. The outside
 *   line is cut off meanwhile: push_input takes nothing, so outside input
 *   waits instead of mixing into the loop.
 * - Modem lines: a terminal is attached (DCD, DSR, CTS asserted, RI not).
 * - IRQ: the PC gates the UART's interrupt output with OUT2 (MCR bit 3) and,
 *   since loopback forces the OUT pins inactive, the line is off in loopback.
 *   Linux sets OUT2 when it opens the port; a guest that polls, like our test
 *   guest, never sees an interrupt, which is what it wants.
 */
#include <errno.h>
#include <string.h>

#include "godwit/serial8250.h"

/* What the modem status inputs read when the outside world is attached. */
#define MSR_LINES_EXTERNAL (UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS)
/* The chip's divisor after power-up is undefined; 12 is 9600 baud. */
#define DLL_RESET 12

static bool fifo_on(const struct serial8250 *s)
{
	return s->fcr & UART_FCR_ENABLE_FIFO;
}

/* How many received bytes the guest can see in the FIFO (or holding register). */
static unsigned int fifo_level(const struct serial8250 *s)
{
	return MIN(s->rx_len, fifo_on(s) ? SERIAL8250_FIFO_SIZE : 1u);
}

static unsigned int rx_trigger(const struct serial8250 *s)
{
	static const unsigned int levels[] = { 1, 4, 8, 14 };

	return levels[(s->fcr & UART_FCR_TRIGGER_MASK) >> 6];
}

static void rx_clear(struct serial8250 *s)
{
	s->rx_head = 0;
	s->rx_len = 0;
}

static void rx_put(struct serial8250 *s, const uint8_t *buf, size_t len)
{
	uint32_t tail = (s->rx_head + s->rx_len) % SERIAL8250_RX_BUF_SIZE;
	size_t first = MIN(len, (size_t)(SERIAL8250_RX_BUF_SIZE - tail));

	memcpy(&s->rx[tail], buf, first);
	memcpy(&s->rx[0], buf + first, len - first);
	s->rx_len += (uint32_t)len;
}

static uint8_t rx_take(struct serial8250 *s)
{
	uint8_t b = s->rx[s->rx_head];

	s->rx_head = (s->rx_head + 1) % SERIAL8250_RX_BUF_SIZE;
	s->rx_len--;
	return b;
}

static uint8_t lsr_value(const struct serial8250 *s)
{
	return s->lsr_errors | UART_LSR_THRE | UART_LSR_TEMT | (s->rx_len ? UART_LSR_DR : 0);
}

/* The modem status inputs: the outside world, or in loopback the MCR outputs. */
static uint8_t modem_lines(uint8_t mcr)
{
	uint8_t lines = 0;

	if (!(mcr & UART_MCR_LOOP))
		return MSR_LINES_EXTERNAL;
	if (mcr & UART_MCR_RTS)
		lines |= UART_MSR_CTS;
	if (mcr & UART_MCR_DTR)
		lines |= UART_MSR_DSR;
	if (mcr & UART_MCR_OUT1)
		lines |= UART_MSR_RI;
	if (mcr & UART_MCR_OUT2)
		lines |= UART_MSR_DCD;
	return lines;
}

/* New input levels: latch the delta bits for what changed (RI: trailing edge only). */
static void update_msr(struct serial8250 *s)
{
	uint8_t old = s->msr & ~UART_MSR_DELTA;
	uint8_t now = modem_lines(s->mcr);
	uint8_t changed = old ^ now;
	uint8_t delta = s->msr & UART_MSR_DELTA;

	if (changed & UART_MSR_CTS)
		delta |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		delta |= UART_MSR_DDSR;
	if (changed & UART_MSR_DCD)
		delta |= UART_MSR_DDCD;
	if ((old & UART_MSR_RI) && !(now & UART_MSR_RI))
		delta |= UART_MSR_TERI;
	s->msr = now | delta;
}

/* The highest-priority pending, enabled interrupt, as IIR bits 0-3. */
static uint8_t pending_iir(const struct serial8250 *s)
{
	if ((s->ier & UART_IER_RLSI) && (s->lsr_errors & UART_LSR_ERRORS))
		return UART_IIR_RLSI;
	if ((s->ier & UART_IER_RDI) && s->rx_len) {
		if (fifo_on(s) && fifo_level(s) < rx_trigger(s))
			return UART_IIR_CTI;
		return UART_IIR_RDI;
	}
	if ((s->ier & UART_IER_THRI) && s->thr_ipending)
		return UART_IIR_THRI;
	if ((s->ier & UART_IER_MSI) && (s->msr & UART_MSR_DELTA))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

static void update_irq(struct serial8250 *s)
{
	int level = pending_iir(s) != UART_IIR_NO_INT && (s->mcr & UART_MCR_OUT2) &&
		    !(s->mcr & UART_MCR_LOOP);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	s->ops->set_irq(s->opaque, level);
}

static void reset(struct serial8250 *s)
{
	s->ier = 0;
	s->lcr = 0;
	s->mcr = 0;
	s->lsr_errors = 0;
	s->msr = MSR_LINES_EXTERNAL;
	s->scr = 0;
	s->dll = DLL_RESET;
	s->dlm = 0;
	s->fcr = 0;
	s->thr_ipending = false;
	s->rbr = 0;
	rx_clear(s);
}

int serial8250__init(struct serial8250 *s, const struct serial8250_ops *ops, void *opaque)
{
	int ret;

	if (!ops || !ops->set_irq || !ops->write_out)
		return -EINVAL;
	memset(s, 0, offsetof(struct serial8250, rx));
	ret = -pthread_mutex_init(&s->lock, NULL);
	if (ret)
		return ret;
	s->ops = ops;
	s->opaque = opaque;
	s->irq_level = 0;
	reset(s);
	return 0;
}

void serial8250__exit(struct serial8250 *s)
{
	pthread_mutex_destroy(&s->lock);
}

static void transmit(struct serial8250 *s, uint8_t val)
{
	unsigned int room = fifo_on(s) ? SERIAL8250_FIFO_SIZE : 1;

	if (!(s->mcr & UART_MCR_LOOP))
		s->ops->write_out(s->opaque, &val, 1);
	else if (s->rx_len < room)
		rx_put(s, &val, 1);
	else
		s->lsr_errors |= UART_LSR_OE;
	/* Sent at once: the THR is empty again, which is an interrupt of its own. */
	s->thr_ipending = true;
}

static void write_ier(struct serial8250 *s, uint8_t val)
{
	val &= UART_IER_RDI | UART_IER_THRI | UART_IER_RLSI | UART_IER_MSI;
	/* Enabling THRI with the THR empty interrupts at once; Linux tests for it. */
	if (!(s->ier & UART_IER_THRI) && (val & UART_IER_THRI))
		s->thr_ipending = true;
	s->ier = val;
}

static void write_fcr(struct serial8250 *s, uint8_t val)
{
	bool was_on = fifo_on(s);

	/* With bit 0 clear the chip ignores the other bits: FIFOs off, and emptied. */
	if (!(val & UART_FCR_ENABLE_FIFO)) {
		if (was_on)
			rx_clear(s);
		s->fcr = 0;
		return;
	}
	if (!was_on || (val & UART_FCR_CLEAR_RCVR))
		rx_clear(s);
	/* UART_FCR_CLEAR_XMIT: the transmit FIFO is always empty here. */
	s->fcr = val & (UART_FCR_ENABLE_FIFO | UART_FCR_DMA_SELECT | UART_FCR_TRIGGER_MASK);
}

static void write_mcr(struct serial8250 *s, uint8_t val)
{
	s->mcr = val & (UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT1 | UART_MCR_OUT2 |
			UART_MCR_LOOP);
	update_msr(s);
}

void serial8250__io_write(struct serial8250 *s, unsigned int offset, uint8_t val)
{
	bool dlab;

	if (offset >= SERIAL8250_NR_REGS)
		return;
	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case UART_TX:
		if (dlab)
			s->dll = val;
		else
			transmit(s, val);
		break;
	case UART_IER:
		if (dlab)
			s->dlm = val;
		else
			write_ier(s, val);
		break;
	case UART_FCR:
		write_fcr(s, val);
		break;
	case UART_LCR:
		s->lcr = val;
		break;
	case UART_MCR:
		write_mcr(s, val);
		break;
	case UART_SCR:
		s->scr = val;
		break;
	default:
		/* LSR and MSR writes are for factory testing: ignored. */
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static uint8_t read_iir(struct serial8250 *s)
{
	uint8_t id = pending_iir(s);

	/* Reading IIR acknowledges THRE, but only when THRE is what it reports. */
	if (id == UART_IIR_THRI)
		s->thr_ipending = false;
	return id | (fifo_on(s) ? UART_IIR_FIFO : 0);
}

static uint8_t read_reg(struct serial8250 *s, unsigned int offset)
{
	bool dlab = s->lcr & UART_LCR_DLAB;
	uint8_t val;

	switch (offset) {
	case UART_RX:
		if (dlab)
			return s->dll;
		/* An empty RBR reads back the last byte received. */
		if (s->rx_len)
			s->rbr = rx_take(s);
		return s->rbr;
	case UART_IER:
		return dlab ? s->dlm : s->ier;
	case UART_IIR:
		return read_iir(s);
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		val = lsr_value(s);
		s->lsr_errors = 0;
		return val;
	case UART_MSR:
		val = s->msr;
		s->msr &= ~UART_MSR_DELTA;
		return val;
	default:
		return s->scr;
	}
}

void serial8250__io_read(struct serial8250 *s, unsigned int offset, uint8_t *val)
{
	if (offset >= SERIAL8250_NR_REGS) {
		*val = 0xff;
		return;
	}
	pthread_mutex_lock(&s->lock);
	*val = read_reg(s, offset);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static size_t room_locked(const struct serial8250 *s)
{
	if (s->mcr & UART_MCR_LOOP)
		return 0;
	return SERIAL8250_RX_BUF_SIZE - s->rx_len;
}

size_t serial8250__push_input(struct serial8250 *s, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = MIN(len, room_locked(s));
	if (n) {
		rx_put(s, buf, n);
		update_irq(s);
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial8250__input_room(struct serial8250 *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = room_locked(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial8250__save(struct serial8250 *s, struct serial8250_state *st)
{
	uint32_t first;

	memset(st, 0, offsetof(struct serial8250_state, rx));
	pthread_mutex_lock(&s->lock);
	st->ier = s->ier;
	st->lcr = s->lcr;
	st->mcr = s->mcr;
	st->lsr = lsr_value(s);
	st->msr = s->msr;
	st->scr = s->scr;
	st->dll = s->dll;
	st->dlm = s->dlm;
	st->fcr = s->fcr;
	st->thr_ipending = s->thr_ipending;
	st->rbr = s->rbr;
	st->rx_len = s->rx_len;
	first = MIN(s->rx_len, SERIAL8250_RX_BUF_SIZE - s->rx_head);
	memcpy(st->rx, &s->rx[s->rx_head], first);
	memcpy(st->rx + first, s->rx, s->rx_len - first);
	pthread_mutex_unlock(&s->lock);
	memset(st->rx + st->rx_len, 0, SERIAL8250_RX_BUF_SIZE - st->rx_len);
}

/* Is @st a state this model can be in? Every field is checked: it came off the wire. */
static bool state_valid(const struct serial8250_state *st)
{
	const uint8_t fcr_bits = UART_FCR_ENABLE_FIFO | UART_FCR_DMA_SELECT | UART_FCR_TRIGGER_MASK;
	const uint8_t always = UART_LSR_THRE | UART_LSR_TEMT;

	if (st->rx_len > SERIAL8250_RX_BUF_SIZE)
		return false;
	if (st->ier & 0xf0 || st->mcr & 0xe0 || st->thr_ipending > 1)
		return false;
	if (st->fcr & ~fcr_bits || (st->fcr && !(st->fcr & UART_FCR_ENABLE_FIFO)))
		return false;
	/* Only an overrun (in loopback) can be latched; DR says whether bytes wait. */
	if ((st->lsr & always) != always || st->lsr & (UART_LSR_ERRORS & ~UART_LSR_OE))
		return false;
	if (!!(st->lsr & UART_LSR_DR) != (st->rx_len > 0))
		return false;
	if ((st->msr & ~UART_MSR_DELTA) != modem_lines(st->mcr))
		return false;
	return true;
}

int serial8250__load(struct serial8250 *s, const struct serial8250_state *st)
{
	if (!state_valid(st))
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->ier = st->ier;
	s->lcr = st->lcr;
	s->mcr = st->mcr;
	s->lsr_errors = st->lsr & UART_LSR_ERRORS;
	s->msr = st->msr;
	s->scr = st->scr;
	s->dll = st->dll;
	s->dlm = st->dlm;
	s->fcr = st->fcr;
	s->thr_ipending = st->thr_ipending;
	s->rbr = st->rbr;
	s->rx_head = 0;
	s->rx_len = st->rx_len;
	memcpy(s->rx, st->rx, st->rx_len);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
