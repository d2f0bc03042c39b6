/* What allocating a destination's guest RAM costs, with and without huge pages: a 1 GiB
 * memfd mapped shared, MADV_HUGEPAGE asked for (HUGE=1) or not, MADV_POPULATE_WRITE over
 * it, then 1 MiB copies over the populated pages; CPU time of each step, and how much of
 * the mapping came as 2 MiB pages (smaps ShmemPmdMapped). The kernel gives a memfd huge
 * pages only where /sys/kernel/mm/transparent_hugepage/shmem_enabled allows them.
 * Usage: populate HUGE. Build: gcc -O2 populate.c. Used for docs/bench.md, "On an idle
 * machine" (issue 17). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define SIZE (1UL << 30)
#define CHUNK (1UL << 20)

static double cpu_s(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void print_pmd_mapped(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "ShmemPmdMapped"))
			fputs(line, stdout);
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	int huge = argc > 1 && atoi(argv[1]);
	double t0, t1, t2;
	char *p, *buf;
	size_t off;
	int fd;

	fd = memfd_create("guest-ram", 0);
	if (fd < 0 || ftruncate(fd, SIZE)) {
		perror("memfd");
		return 1;
	}
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	buf = malloc(CHUNK);
	if (p == MAP_FAILED || !buf) {
		perror("mmap");
		return 1;
	}
	memset(buf, 7, CHUNK);
	if (huge && madvise(p, SIZE, MADV_HUGEPAGE))
		perror("MADV_HUGEPAGE");
	t0 = cpu_s();
	if (madvise(p, SIZE, MADV_POPULATE_WRITE)) {
		perror("MADV_POPULATE_WRITE");
		return 1;
	}
	t1 = cpu_s();
	for (off = 0; off < SIZE; off += CHUNK)
		memcpy(p + off, buf, CHUNK);
	t2 = cpu_s();
	print_pmd_mapped();
	printf("huge=%d: populate %.0f ms CPU per GiB, copy over it %.0f ms\n", huge,
	       (t1 - t0) * 1e3, (t2 - t1) * 1e3);
	return 0;
}
