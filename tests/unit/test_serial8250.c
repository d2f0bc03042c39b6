// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/serial8250.h"

/* What the device did to the outside world. */
struct host {
	uint8_t out[256];
	size_t out_len;
	int irq;
	int irq_calls;
	int bad_irq_calls; /* set_irq with the level it already had */
};

static void host_set_irq(void *opaque, int level)
{
	struct host *h = opaque;

	if (level == h->irq)
		h->bad_irq_calls++;
	h->irq = level;
	h->irq_calls++;
}

static void host_write_out(void *opaque, const uint8_t *buf, size_t len)
{
	struct host *h = opaque;

	if (h->out_len + len <= sizeof(h->out)) {
		memcpy(h->out + h->out_len, buf, len);
		h->out_len += len;
	}
}

static const struct serial8250_ops host_ops = {
	.set_irq = host_set_irq,
	.write_out = host_write_out,
};

struct fixture {
	struct host host;
	struct serial8250 dev;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || serial8250__init(&f->dev, &host_ops, &f->host))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->host.bad_irq_calls, 0);
	serial8250__exit(&f->dev);
	free(f);
	return 0;
}

static uint8_t rd(struct fixture *f, unsigned int off)
{
	uint8_t v = 0x5a;

	serial8250__io_read(&f->dev, off, &v);
	return v;
}

static void wr(struct fixture *f, unsigned int off, uint8_t v)
{
	serial8250__io_write(&f->dev, off, v);
}

static void test_reset_values(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, UART_IER), 0x00);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(rd(f, UART_LCR), 0x00);
	assert_int_equal(rd(f, UART_MCR), 0x00);
	assert_int_equal(rd(f, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	assert_int_equal(rd(f, UART_SCR), 0x00);
	assert_int_equal(rd(f, UART_RX), 0x00);
	wr(f, UART_LCR, UART_LCR_DLAB);
	assert_int_equal(rd(f, UART_DLL), 12);
	assert_int_equal(rd(f, UART_DLM), 0);
	/* Out of range offsets: no register. */
	assert_int_equal(rd(f, 8), 0xff);
	wr(f, 8, 0x12);
	assert_int_equal(f->host.irq_calls, 0);
	assert_int_equal(f->host.out_len, 0);
	assert_int_equal(serial8250__input_room(&f->dev), SERIAL8250_RX_BUF_SIZE);
}

static void test_init_needs_ops(void **state)
{
	static const struct serial8250_ops no_out = { .set_irq = host_set_irq };
	struct fixture *f = *state;

	assert_int_equal(serial8250__init(&f->dev, NULL, NULL), -EINVAL);
	assert_int_equal(serial8250__init(&f->dev, &no_out, NULL), -EINVAL);
}

static void test_dlab_switches_registers(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IER, UART_IER_RDI | UART_IER_MSI);
	wr(f, UART_LCR, UART_LCR_DLAB | 0x03);
	wr(f, UART_DLL, 0x01);
	wr(f, UART_DLM, 0x02);
	assert_int_equal(rd(f, UART_DLL), 0x01);
	assert_int_equal(rd(f, UART_DLM), 0x02);
	/* The divisor write did not transmit. */
	assert_int_equal(f->host.out_len, 0);
	wr(f, UART_LCR, 0x03);
	assert_int_equal(rd(f, UART_IER), UART_IER_RDI | UART_IER_MSI);
	wr(f, UART_IER, 0xff); /* the upper bits do not exist */
	assert_int_equal(rd(f, UART_IER), 0x0f);
	wr(f, UART_LCR, UART_LCR_DLAB | 0x03);
	assert_int_equal(rd(f, UART_DLL), 0x01);
	assert_int_equal(rd(f, UART_DLM), 0x02);
}

static void test_lcr_scr_round_trip(void **state)
{
	struct fixture *f = *state;
	unsigned int v;

	for (v = 0; v < 0x80; v++) {
		wr(f, UART_LCR, (uint8_t)v);
		assert_int_equal(rd(f, UART_LCR), v);
	}
	for (v = 0; v < 0x100; v++) {
		wr(f, UART_SCR, (uint8_t)v);
		assert_int_equal(rd(f, UART_SCR), v);
	}
	wr(f, UART_MCR, 0xff);
	assert_int_equal(rd(f, UART_MCR), 0x1f);
}

static void test_thr_write_and_thre_interrupt(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_TX, 'h');
	wr(f, UART_TX, 'i');
	assert_int_equal(f->host.out_len, 2);
	assert_memory_equal(f->host.out, "hi", 2);
	assert_int_equal(rd(f, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			 UART_LSR_THRE | UART_LSR_TEMT);
	/* Not enabled: not reported. */
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);

	wr(f, UART_MCR, UART_MCR_OUT2);
	wr(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->host.irq, 1);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);
	/* The IIR read acknowledged it. */
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(f->host.irq, 0);

	/* Each completed write raises it again. */
	wr(f, UART_TX, '!');
	assert_int_equal(f->host.irq, 1);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);
	assert_int_equal(f->host.irq, 0);

	/* Re-enabling THRI re-asserts it (Linux checks for this). */
	wr(f, UART_IER, 0);
	wr(f, UART_IER, UART_IER_THRI);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);
	assert_int_equal(f->host.irq_calls, 6);
}

static void push(struct fixture *f, const char *s, size_t n)
{
	assert_int_equal(serial8250__push_input(&f->dev, (const uint8_t *)s, n), n);
}

static void test_rx_in_order_beyond_fifo(void **state)
{
	static const char msg[] = "0123456789abcdefghij"; /* 20 bytes */
	struct fixture *f = *state;
	size_t i;

	wr(f, UART_FCR, UART_FCR_ENABLE_FIFO | 0xc0); /* trigger level 14 */
	wr(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	push(f, msg, 20);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	/* Not enabled yet. */
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(f->host.irq, 0);
	wr(f, UART_IER, UART_IER_RDI);
	assert_int_equal(f->host.irq, 1);
	for (i = 0; i < 20; i++) {
		/* 16 visible, so at the trigger level until fewer than 14 remain, then timeout. */
		uint8_t id = 20 - i >= 14 ? UART_IIR_RDI : UART_IIR_CTI;

		assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | id);
		assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
		assert_int_equal(rd(f, UART_RX), msg[i]);
	}
	assert_int_equal(rd(f, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(f->host.irq, 0);
	assert_int_equal(f->host.irq_calls, 2);
	/* An empty RBR reads back the last byte. */
	assert_int_equal(rd(f, UART_RX), 'j');
}

static void test_rx_without_fifo(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IER, UART_IER_RDI);
	push(f, "xyz", 3);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(f, UART_RX), 'x');
	assert_int_equal(rd(f, UART_RX), 'y');
	assert_int_equal(rd(f, UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(f, UART_RX), 'z');
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
}

static void test_push_input_stops_at_buffer_size(void **state)
{
	struct fixture *f = *state;
	size_t big = SERIAL8250_RX_BUF_SIZE + 100;
	uint8_t *buf = malloc(big);
	size_t i;

	assert_non_null(buf);
	for (i = 0; i < big; i++)
		buf[i] = (uint8_t)(i * 7);
	assert_int_equal(serial8250__push_input(&f->dev, buf, 10), 10);
	assert_int_equal(serial8250__input_room(&f->dev), SERIAL8250_RX_BUF_SIZE - 10);
	assert_int_equal(serial8250__push_input(&f->dev, buf + 10, big - 10),
			 SERIAL8250_RX_BUF_SIZE - 10);
	assert_int_equal(serial8250__input_room(&f->dev), 0);
	assert_int_equal(serial8250__push_input(&f->dev, buf, 1), 0);
	/* Draining a little makes room; the ring wraps and keeps order. */
	for (i = 0; i < 50; i++)
		assert_int_equal(rd(f, UART_RX), buf[i]);
	assert_int_equal(serial8250__push_input(&f->dev, buf + SERIAL8250_RX_BUF_SIZE, 100), 50);
	for (i = 50; i < SERIAL8250_RX_BUF_SIZE + 50; i++) {
		if (rd(f, UART_RX) != buf[i])
			fail_msg("byte %zu out of order", i);
	}
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	free(buf);
}

static void test_fcr_clears_fifos(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	push(f, "abcdef", 6);
	wr(f, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_XMIT);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	wr(f, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(serial8250__input_room(&f->dev), SERIAL8250_RX_BUF_SIZE);

	/* Turning the FIFOs off empties them too, and IIR loses its FIFO bits. */
	push(f, "gh", 2);
	wr(f, UART_FCR, 0);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;
	int i;

	wr(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	wr(f, UART_IER, UART_IER_RDI | UART_IER_RLSI | UART_IER_MSI);
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_OUT2); /* Linux's probe */
	assert_int_equal(rd(f, UART_MSR) & 0xf0, UART_MSR_CTS | UART_MSR_DCD);
	/* Loopback: the outside line is cut off, output comes back as input. */
	assert_int_equal(serial8250__input_room(&f->dev), 0);
	assert_int_equal(serial8250__push_input(&f->dev, (const uint8_t *)"x", 1), 0);
	wr(f, UART_TX, 'A');
	wr(f, UART_TX, 'B');
	assert_int_equal(f->host.out_len, 0);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	/* Trigger level 1: any byte reaches it, so this is "data available", not a timeout. */
	assert_int_equal(rd(f, UART_IIR) & 0x0f, UART_IIR_RDI);
	assert_int_equal(rd(f, UART_RX), 'A');
	assert_int_equal(rd(f, UART_RX), 'B');

	/* 17 bytes into a 16-byte FIFO: an overrun, reported by LSR and cleared by reading it. */
	for (i = 0; i < 17; i++)
		wr(f, UART_TX, (uint8_t)i);
	assert_int_equal(rd(f, UART_IIR) & 0x0f, UART_IIR_RLSI);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_OE, UART_LSR_OE);
	assert_int_equal(rd(f, UART_LSR) & UART_LSR_OE, 0);
	for (i = 0; i < 16; i++)
		assert_int_equal(rd(f, UART_RX), i);

	/* The MSR follows the MCR, with delta bits. */
	rd(f, UART_MSR);
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT1);
	assert_int_equal(rd(f, UART_IIR) & 0x0f, UART_IIR_MSI);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_DSR | UART_MSR_RI | UART_MSR_DCTS |
						  UART_MSR_DDSR | UART_MSR_DDCD);
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_DSR | UART_MSR_TERI);
	assert_int_equal(rd(f, UART_MSR), UART_MSR_DSR);
	assert_int_equal(rd(f, UART_IIR) & 0x0f, UART_IIR_NO_INT);
	/* The IRQ line stayed low all along: loopback forces the OUT pins off. */
	assert_int_equal(f->host.irq_calls, 0);

	/* Back to normal: the line is connected again, output goes out. */
	wr(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(rd(f, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	assert_int_equal(serial8250__input_room(&f->dev), SERIAL8250_RX_BUF_SIZE);
	wr(f, UART_TX, 'C');
	assert_int_equal(f->host.out_len, 1);
	assert_int_equal(f->host.out[0], 'C');
}

static void test_irq_only_on_change_and_gated_by_out2(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_IER, UART_IER_RDI);
	push(f, "ab", 2);
	/* Pending, but OUT2 is off: the line stays low. */
	assert_int_equal(rd(f, UART_IIR), UART_IIR_RDI);
	assert_int_equal(f->host.irq_calls, 0);
	wr(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(f->host.irq, 1);
	assert_int_equal(f->host.irq_calls, 1);
	/* More input, more register traffic: no new call while the level holds. */
	push(f, "cd", 2);
	rd(f, UART_LSR);
	rd(f, UART_IIR);
	assert_int_equal(rd(f, UART_RX), 'a');
	assert_int_equal(f->host.irq_calls, 1);
	wr(f, UART_MCR, 0);
	assert_int_equal(f->host.irq, 0);
	wr(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(f->host.irq, 1);
	rd(f, UART_RX);
	rd(f, UART_RX);
	rd(f, UART_RX);
	assert_int_equal(f->host.irq, 0);
	assert_int_equal(f->host.irq_calls, 4);
}

static void test_interrupt_priority(void **state)
{
	struct fixture *f = *state;

	wr(f, UART_MCR, UART_MCR_LOOP);
	wr(f, UART_TX, 1);
	wr(f, UART_TX, 2); /* no FIFO: overrun */
	wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS); /* a modem status change */
	wr(f, UART_IER, 0x0f);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_RLSI);
	rd(f, UART_LSR);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(f, UART_RX), 1);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_THRI);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_MSI);
	rd(f, UART_MSR);
	assert_int_equal(rd(f, UART_IIR), UART_IIR_NO_INT);
}

static void fill_state(struct fixture *f)
{
	wr(f, UART_LCR, UART_LCR_DLAB);
	wr(f, UART_DLL, 0x34);
	wr(f, UART_DLM, 0x12);
	wr(f, UART_LCR, 0x1b);
	wr(f, UART_FCR, UART_FCR_ENABLE_FIFO | 0x80);
	wr(f, UART_IER, UART_IER_RDI | UART_IER_THRI);
	wr(f, UART_MCR, UART_MCR_OUT2 | UART_MCR_DTR);
	wr(f, UART_SCR, 0xa5);
	push(f, "hello, world", 12);
	rd(f, UART_RX); /* move the ring's head off zero */
}

static void test_save_load_round_trip(void **state)
{
	struct fixture *f = *state;
	struct serial8250_state *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct host h2 = { .irq = 0 };
	struct serial8250 *d2 = malloc(sizeof(*d2));
	unsigned int off;
	uint8_t x, y;

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(d2);
	fill_state(f);
	serial8250__save(&f->dev, a);
	assert_int_equal(a->rx_len, 11);
	assert_memory_equal(a->rx, "ello, world", 11);

	assert_int_equal(serial8250__init(d2, &host_ops, &h2), 0);
	assert_int_equal(serial8250__load(d2, a), 0);
	/* The IRQ line follows the loaded state. */
	assert_int_equal(h2.irq, 1);
	assert_int_equal(h2.irq_calls, 1);
	serial8250__save(d2, b);
	assert_memory_equal(a, b, sizeof(*a));

	/* Both devices now behave alike, side effects of reads included. */
	for (off = 0; off < 2 * SERIAL8250_NR_REGS; off++) {
		serial8250__io_read(&f->dev, off % SERIAL8250_NR_REGS, &x);
		serial8250__io_read(d2, off % SERIAL8250_NR_REGS, &y);
		assert_int_equal(x, y);
	}
	serial8250__exit(d2);
	free(d2);
	free(a);
	free(b);
}

static void test_load_rejects_invalid_state(void **state)
{
	struct fixture *f = *state;
	struct serial8250_state *good = malloc(sizeof(*good)), *bad = malloc(sizeof(*bad));
	struct serial8250_state *after = malloc(sizeof(*after));
	size_t i;
	static const struct {
		size_t off;
		uint8_t val;
	} bytes[] = {
#define AT(field) offsetof(struct serial8250_state, field)
		{ AT(ier), 0x10 },
		{ AT(mcr), 0x20 | UART_MCR_OUT2 | UART_MCR_DTR },
		{ AT(fcr), UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR },
		{ AT(fcr), 0x80 }, /* trigger bits with FIFO off */
		{ AT(thr_ipending), 2 },
		{ AT(lsr), UART_LSR_DR | UART_LSR_THRE }, /* TEMT missing */
		{ AT(lsr), UART_LSR_THRE | UART_LSR_TEMT }, /* DR clear with bytes waiting */
		{ AT(lsr), UART_LSR_DR | UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_FE },
		{ AT(msr), 0x00 }, /* lines that do not match the MCR */
#undef AT
	};

	assert_non_null(good);
	assert_non_null(bad);
	assert_non_null(after);
	fill_state(f);
	serial8250__save(&f->dev, good);

	for (i = 0; i < sizeof(bytes) / sizeof(bytes[0]); i++) {
		memcpy(bad, good, sizeof(*bad));
		((uint8_t *)bad)[bytes[i].off] = bytes[i].val;
		if (serial8250__load(&f->dev, bad) != -EINVAL)
			fail_msg("bad state %zu accepted", i);
	}
	memcpy(bad, good, sizeof(*bad));
	bad->rx_len = SERIAL8250_RX_BUF_SIZE + 1;
	assert_int_equal(serial8250__load(&f->dev, bad), -EINVAL);
	bad->rx_len = UINT32_MAX;
	assert_int_equal(serial8250__load(&f->dev, bad), -EINVAL);
	bad->rx_len = 0; /* DR still set */
	assert_int_equal(serial8250__load(&f->dev, bad), -EINVAL);

	/* A rejected state leaves the device as it was. */
	serial8250__save(&f->dev, after);
	assert_memory_equal(good, after, sizeof(*good));

	/* The largest valid buffer loads. */
	memcpy(bad, good, sizeof(*bad));
	bad->rx_len = SERIAL8250_RX_BUF_SIZE;
	assert_int_equal(serial8250__load(&f->dev, bad), 0);
	assert_int_equal(serial8250__input_room(&f->dev), 0);
	free(good);
	free(bad);
	free(after);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_reset_values),
		T(test_init_needs_ops),
		T(test_dlab_switches_registers),
		T(test_lcr_scr_round_trip),
		T(test_thr_write_and_thre_interrupt),
		T(test_rx_in_order_beyond_fifo),
		T(test_rx_without_fifo),
		T(test_push_input_stops_at_buffer_size),
		T(test_fcr_clears_fifos),
		T(test_loopback),
		T(test_irq_only_on_change_and_gated_by_out2),
		T(test_interrupt_priority),
		T(test_save_load_round_trip),
		T(test_load_rejects_invalid_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
