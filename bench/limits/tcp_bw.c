/* Loopback TCP throughput: a forked receiver, N MiB sent in CH-byte send()s.
 * Usage: tcp_bw [MIB [SEND_BYTES]]. Build: gcc -O2 tcp_bw.c -llz4 -lxxhash. Used for docs/bench.md,
 * "Where the time goes on an incompressible move" (issue 17). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
	long mib=argc>1?atol(argv[1]):2048; size_t ch=argc>2?(size_t)atol(argv[2]):(1<<20);
	size_t total=(size_t)mib<<20;
	int ls=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
	socklen_t l=sizeof a; bind(ls,(void*)&a,l); listen(ls,1); getsockname(ls,(void*)&a,&l);
	pid_t p=fork();
	if(!p){int c=accept(ls,0,0);char*b=malloc(1<<20);size_t got=0;ssize_t k;
		while(got<total&&(k=recv(c,b,1<<20,0))>0)got+=k; _exit(got!=total);}
	int s=socket(AF_INET,SOCK_STREAM,0); connect(s,(void*)&a,l);
	char*b=malloc(ch); for(size_t i=0;i<ch;i++)b[i]=rand();
	double t=now(); size_t sent=0;
	while(sent<total){ssize_t k=send(s,b,ch<total-sent?ch:total-sent,0); if(k<=0){perror("send");return 1;} sent+=k;}
	int st; waitpid(p,&st,0); t=now()-t;
	printf("loopback TCP %ld MiB, %zu-byte sends: %.2f GB/s\n",mib,ch,total/t/1e9);
	return 0;
}
