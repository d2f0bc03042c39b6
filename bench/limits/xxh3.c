/* XXH3-64 over 1 MiB, libxxhash (built for SSE2) against its header built for AVX2, in CPU time.
 * Build: gcc -O2 xxh3.c -lxxhash -o xxh3_lib; gcc -O2 -mavx2 -DXXH_INLINE_ALL xxh3.c -o xxh3_avx2.
 * Used for docs/bench.md, "Receiving into guest memory" (issue 17). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <xxhash.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){size_t n=1<<20;unsigned char*b=malloc(n);for(size_t i=0;i<n;i++)b[i]=rand();
 XXH3_state_t*s=XXH3_createState();unsigned long long x=0;
 for(int k=0;k<3;k++){double t=now();for(int i=0;i<1024;i++){XXH3_64bits_reset(s);XXH3_64bits_update(s,b,n);x^=XXH3_64bits_digest(s);}t=now()-t;printf("%.2f GB/s (%llx)\n",1024.0*n/t/1e9,x);}
 return 0;}
