/* Per-GiB costs of the pieces of a RAM record's path, on random (incompressible) data.
 * Usage: parts (no arguments). Build: gcc -O2 parts.c -llz4 -lxxhash. Used for docs/bench.md,
 * "Where the time goes on an incompressible move" (issue 17). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <lz4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define SZ (256UL<<20)
#define CH (1UL<<20)
int main(void){
	uint64_t *src=malloc(SZ),x=88172645463325252ULL; for(size_t i=0;i<SZ/8;i++){x^=x<<13;x^=x>>7;x^=x<<17;src[i]=x;}
	uint8_t *s=(uint8_t*)src; double t; volatile uint64_t sink=0;
	t=now(); for(size_t o=0;o<SZ;o+=CH) sink+=XXH3_64bits(s+o,CH); t=now()-t;
	printf("XXH3_64bits 1 MiB blocks: %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	char *c=malloc(LZ4_compressBound(CH)); t=now(); for(size_t o=0;o<SZ;o+=CH) sink+=LZ4_compress_default((char*)s+o,c,CH,LZ4_compressBound(CH)); t=now()-t;
	printf("LZ4_compress_default on random 1 MiB: %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	int fd=memfd_create("x",0); ftruncate(fd,SZ);
	t=now(); for(size_t o=0;o<SZ;o+=CH) pwrite(fd,s+o,CH,o); t=now()-t;
	printf("pwrite 1 MiB into a fresh memfd (allocates): %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	t=now(); for(size_t o=0;o<SZ;o+=CH) pwrite(fd,s+o,CH,o); t=now()-t;
	printf("pwrite 1 MiB into the same memfd again (pages exist): %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	int fd2=memfd_create("y",0); ftruncate(fd2,SZ); uint8_t *m=mmap(0,SZ,PROT_READ|PROT_WRITE,MAP_SHARED,fd2,0);
	t=now(); memcpy(m,s,SZ); t=now()-t;
	printf("memcpy into a fresh memfd mapping (faults + zeroing): %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	t=now(); for(size_t o=0;o<SZ;o+=CH) memcpy(m+o,s+o,CH); t=now()-t;
	printf("memcpy into the populated memfd mapping: %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	int fd3=memfd_create("z",0); ftruncate(fd3,SZ);
	t=now(); fallocate(fd3,0,0,SZ); t=now()-t;
	printf("fallocate a fresh memfd: %.2f GB/s (%.0f ms/GiB)\n",SZ/t/1e9,t*1e3*(1UL<<30)/SZ);
	t=now(); off_t d=0,h; int n=0; while((d=lseek(fd,d,SEEK_DATA))>=0){h=lseek(fd,d,SEEK_HOLE);n++;if(h>=(off_t)SZ)break;d=h;} t=now()-t;
	printf("SEEK_DATA+SEEK_HOLE over a populated 256 MiB memfd: %.1f ms (%.0f ms/GiB)\n",t*1e3,t*1e3*4);
	return (int)(sink&0);
}
