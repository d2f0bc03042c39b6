// SPDX-License-Identifier: GPL-2.0
/*
 * godwit-args: prints how many arguments follow the first standalone "--" on the
 * kernel command line (/proc/cmdline), 0 when there is none.
 *
 * Linux passes everything after "--" to init as arguments, already split and
 * unquoted; but it also passes, before those, every unknown parameter without '='
 * found before "--". So init keeps only the last N of its arguments, N from here.
 * The splitting follows the kernel's: words end at whitespace outside double quotes,
 * and every '"' toggles quoting.
 */
#include <stdio.h>
#include <string.h>

#define CMDLINE_MAX 65536

/* Advances *p past one word; returns 1 if the word was exactly "--" (quotes removed). */
static int next_word(const char **p)
{
	const char *s = *p;
	int in_quote = 0, n = 0, dashes = 1;

	for (; *s && (in_quote || (*s != ' ' && *s != '\t' && *s != '\n')); s++) {
		if (*s == '"') {
			in_quote = !in_quote;
			continue;
		}
		if (*s != '-' || ++n > 2)
			dashes = 0;
	}
	*p = s;
	return dashes && n == 2;
}

static const char *skip_spaces(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	return s;
}

int main(void)
{
	static char buf[CMDLINE_MAX];
	const char *p;
	int after = -1;
	size_t len;
	FILE *f;

	f = fopen("/proc/cmdline", "r");
	if (!f) {
		perror("godwit-args: /proc/cmdline");
		return 1;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	for (p = skip_spaces(buf); *p; p = skip_spaces(p)) {
		int dashes = next_word(&p);

		if (after >= 0)
			after++;
		else if (dashes)
			after = 0;
	}
	printf("%d\n", after < 0 ? 0 : after);
	return 0;
}
