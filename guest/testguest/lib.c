/* godwit test guest: freestanding helpers, formatting, the COM1 console, the exit port. */
#include "testguest.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	u8 *d = dst;
	const u8 *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	u8 *d = dst;
	const u8 *s = src;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		while (n--)
			d[n] = s[n];
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	u8 *d = dst;
	while (n--)
		*d++ = (u8)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, u64 v, unsigned base, bool neg)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		put(o, '-');
	while (n)
		put(o, tmp[--n]);
}

/* %s %c %d %u %x %ld %lu %lx %%; no widths. */
int vfmt(char *buf, size_t size, const char *f, va_list ap)
{
	struct out o = {buf, size, 0};
	for (; *f; f++) {
		if (*f != '%') {
			put(&o, *f);
			continue;
		}
		f++;
		bool lng = false;
		if (*f == 'l') {
			lng = true;
			f++;
		}
		switch (*f) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			while (*s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			s64 v = lng ? va_arg(ap, long) : va_arg(ap, int);
			put_num(&o, v < 0 ? -(u64)v : (u64)v, 10, v < 0);
			break;
		}
		case 'u':
			put_num(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10,
				false);
			break;
		case 'x':
			put_num(&o, lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16,
				false);
			break;
		case '%':
			put(&o, '%');
			break;
		default:
			put(&o, '?');
			if (!*f)
				f--;
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)o.len;
}

int fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vfmt(buf, size, f, ap);
	va_end(ap);
	return n;
}

static volatile u32 console_lock;

/* The line and its '\n' in one gate call: buf has room for the newline. */
static void emit_line(char *buf, size_t size)
{
	size_t n = strlen(buf);
	if (n + 1 >= size)
		n = size - 2;
	buf[n] = '\n';
	kcall(KCALL_CONSOLE, 0, n + 1, buf);
}

void println(const char *f, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, f);
	vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
		while (console_lock)
			cpu_relax();
	emit_line(buf, sizeof(buf));
	__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void println_emergency(const char *f, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, f);
	vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	bool locked = false;
	for (u32 i = 0; i < 10000000; i++) {
		if (!__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) {
			locked = true;
			break;
		}
		cpu_relax();
	}
	emit_line(buf, sizeof(buf));
	if (locked)
		__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

/* Writes CODE to the exit port (godwit ends the VM with it), then parks this vCPU. */
void vm_exit(u32 code)
{
	outl(EXIT_PORT, code);
	kcall(KCALL_HALT, 0, 0, 0);
	for (;;)
		cpu_relax();
}
