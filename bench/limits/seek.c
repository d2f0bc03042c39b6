/* SEEK_DATA/SEEK_HOLE the way ram__send_all walks a memfd: per 64 MiB piece, SEEK_HOLE
 * from the piece's data (it runs on to the end of the populated range), vs one walk.
 * Usage: seek [GIB]: GIB written of 2*GIB. Build: gcc -O2 seek.c -llz4 -lxxhash. Used for docs/bench.md,
 * "Where the time goes on an incompressible move" (issue 17). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
	size_t gib=argc>1?atoi(argv[1]):1, pop=gib<<30, size=2*pop, piece=64UL<<20;
	int fd=memfd_create("x",0); ftruncate(fd,size); {char*b=malloc(1<<20);for(size_t i=0;i<(1<<20);i++)b[i]=i*7+1;for(size_t o=0;o<pop;o+=1<<20)pwrite(fd,b,1<<20,o);}
	double t=now(); int calls=0;
	for(size_t pos=0;pos<size;pos+=piece){off_t to=pos+piece,d,h;
		for(d=lseek(fd,pos,SEEK_DATA),calls++;d>=0&&d<to;d=lseek(fd,h,SEEK_DATA),calls++){
			h=lseek(fd,d,SEEK_HOLE);calls++; if(h>to)h=to;}}
	t=now()-t; printf("%zu GiB populated of %zu: per-piece walk %d lseeks %.0f ms; ",gib,2*gib,calls,t*1e3);
	t=now(); off_t d=lseek(fd,0,SEEK_DATA),h=lseek(fd,d,SEEK_HOLE); t=now()-t;
	printf("one SEEK_DATA+SEEK_HOLE %.0f ms (hole at %lld MiB)\n",t*1e3,(long long)h>>20);
	return 0;
}
