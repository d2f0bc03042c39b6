/* Where a destination's received pages go: N MiB over loopback TCP into a fresh memfd, in
 * 1 MiB records, per strategy; the receiving thread's CPU (RUSAGE_THREAD) and the wall time.
 *   buf+pwrite: recv into a buffer, pwrite it into the memfd (godwit before issue 17)
 *   populate:   MADV_POPULATE_WRITE the record's 1 MiB of the mapping, recv into it
 *   fault:      recv straight into the mapping (a page fault allocates each page)
 *   ahead:      recv into the mapping while a helper thread populates AHEAD MiB ahead
 * Usage: recv_into [MIB [AHEAD_MIB]]. Build: gcc -O2 -pthread recv_into.c. Used for
 * docs/bench.md, "Receiving into guest memory" (issue 17). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define REC (1 << 20)
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double cpu(void){struct rusage r;getrusage(RUSAGE_THREAD,&r);return r.ru_utime.tv_sec+r.ru_stime.tv_sec+(r.ru_utime.tv_usec+r.ru_stime.tv_usec)*1e-6;}
static void rd(int c,char*d,size_t n){while(n){ssize_t k=recv(c,d,n,0);if(k<=0)exit(1);d+=k;n-=k;}}
struct ahead{char*base;size_t total,ahead;volatile size_t pos;double cpu;};
static void*helper(void*o){struct ahead*a=o;size_t done=0;double c0=cpu();
	while(done<a->total){size_t want=a->pos+a->ahead;if(want>a->total)want=a->total;
		if(done>=want){usleep(100);continue;}
		madvise(a->base+done,REC,MADV_POPULATE_WRITE);done+=REC;}
	a->cpu=cpu()-c0;return 0;}
static void receive(int c,size_t total,int mode,size_t ahead){
	int fd=memfd_create("r",0);ftruncate(fd,total);
	char*m=mmap(0,total,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_NORESERVE,fd,0),*b=malloc(REC);
	struct ahead a={m,total,ahead,0,0};pthread_t t;
	if(mode==3)pthread_create(&t,0,helper,&a);
	double t0=now(),c0=cpu();
	for(size_t o=0;o<total;o+=REC){
		if(mode==0){rd(c,b,REC);pwrite(fd,b,REC,o);}
		else{if(mode==1)madvise(m+o,REC,MADV_POPULATE_WRITE);rd(c,m+o,REC);a.pos=o+REC;}}
	double cs=cpu()-c0,w=now()-t0;
	if(mode==3)pthread_join(t,0);
	static const char*names[]={"buf+pwrite","populate","fault","ahead"};
	printf("%-10s %6.0f ms wall, receiving thread %5.0f ms CPU (%.0f ms/GiB)",names[mode],w*1e3,cs*1e3,cs*1e3*(1<<30)/total);
	if(mode==3)printf(", helper %.0f ms CPU",a.cpu*1e3);
	printf("\n");fflush(stdout);munmap(m,total);close(fd);free(b);}
int main(int argc,char**argv){
	size_t total=(size_t)(argc>1?atol(argv[1]):1024)<<20,ahead=(size_t)(argc>2?atol(argv[2]):16)<<20;
	for(int mode=0;mode<4;mode++){
		int ls=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
		socklen_t l=sizeof a;bind(ls,(void*)&a,l);listen(ls,1);getsockname(ls,(void*)&a,&l);
		pid_t p=fork();
		if(!p){int s=socket(AF_INET,SOCK_STREAM,0);connect(s,(void*)&a,l);char*b=malloc(REC);
			for(size_t i=0;i<REC;i++)b[i]=rand();
			for(size_t o=0;o<total;o+=REC)
				if(send(s,b,REC,MSG_WAITALL)!=REC)_exit(1);
			_exit(0);}
		int c=accept(ls,0,0);receive(c,total,mode,ahead);int st;waitpid(p,&st,0);close(c);close(ls);}
	return 0;
}
