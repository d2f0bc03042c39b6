/* memcpy bandwidth: copies a 256 MiB buffer into another N times, prints GB/s per pass.
 * Usage: memcpy_bw [MIB [PASSES]]. Build: gcc -O2 memcpy_bw.c -llz4 -lxxhash. Used for docs/bench.md,
 * "Where the time goes on an incompressible move" (issue 17). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
	size_t sz=(size_t)(argc>1?atoi(argv[1]):256)<<20; int n=argc>2?atoi(argv[2]):5;
	char*a=malloc(sz),*b=malloc(sz); memset(a,1,sz); memset(b,2,sz);
	for(int i=0;i<n;i++){double t=now();memcpy(b,a,sz);t=now()-t;printf("memcpy %zu MiB: %.2f GB/s\n",sz>>20,sz/t/1e9);a[i]^=b[sz-1-i];}
	/* 4 KiB chunks, as a per-page copy does */
	for(int i=0;i<n;i++){double t=now();for(size_t o=0;o<sz;o+=4096)memcpy(b+o,a+o,4096);t=now()-t;printf("memcpy 4K x %zu: %.2f GB/s\n",sz/4096,sz/t/1e9);}
	return b[123]==7;
}
