/* bench/probe_phases/probe_decode.c - where the time of one cold decode call goes: built against
   the instrumented header that instrument.py writes (see run.sh). 1 query, 32 q-heads / 8 kv-heads,
   d=128, bf16 K/V; each call follows a copy and a sweep of 512 MiB in 256 KiB parts (as section d
   of bench_attn); prints per call when the first task started, when the split phase ended, the
   merge time and the mean busy time per thread (VERBOSE=1: per worker), then the warm calls.
   usage: probe_decode_phases [threads [kv_len [reps]]] */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
extern unsigned long long fa_ph_t0, fa_ph_prep, fa_ph_pf, fa_ph_first[64], fa_ph_last[64], fa_ph_busy[64], fa_ph_n[64], fa_ph_mfirst[64], fa_ph_mlast[64], fa_ph_mbusy[64], fa_ph_split_end;
static unsigned long long rd(void){return __builtin_ia32_rdtsc();}
static double now(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+1e-9*t.tv_nsec;}
typedef struct { unsigned char *src,*dst; size_t n; int parts; } cj;
static void cpart(void *c, int64_t i, int w){ cj *j=c; size_t a=j->n*i/j->parts, b=j->n*(i+1)/j->parts; (void)w; memcpy(j->dst+a,j->src+a,b-a); }
static volatile unsigned long long sink;
static void rpart(void *c, int64_t i, int w){ cj *j=c; size_t a=j->n*i/j->parts, b=j->n*(i+1)/j->parts, k; unsigned long long s=0; (void)w; for(k=a;k<b;k+=64) s+=j->src[k]; sink+=s; }
static int cmpd(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int T=argc>1?atoi(argv[1]):16, reps=argc>3?atoi(argv[3]):9, r, w; int64_t sk=argc>2?atoll(argv[2]):4096, hq=32, hk=8, d=128, i;
  double t0=now(); unsigned long long c0=rd(); while(now()-t0<0.2){} double ghz=(rd()-c0)/(now()-t0)/1e9;
  fa_pool *pool=NULL; fa_pool_desc pd; memset(&pd,0,sizeof pd); pd.threads=T-1; fa_pool_create(&pool,&pd);
  float *q=malloc(hq*d*4), *o=malloc(hq*d*4); uint16_t *k=malloc(sk*hk*d*2), *v=malloc(sk*hk*d*2);
  for(i=0;i<hq*d;i++) q[i]=(float)rand()/(float)RAND_MAX-0.5f;
  for(i=0;i<sk*hk*d;i++){ k[i]=fa_f32_to_bf16((float)rand()/(float)RAND_MAX-0.5f); v[i]=fa_f32_to_bf16((float)rand()/(float)RAND_MAX-0.5f); }
  fa_attn_desc D; memset(&D,0,sizeof D); D.batch=1; D.seqlen_q=1; D.seqlen_k=sk; D.heads_q=hq; D.heads_kv=hk; D.head_dim=d;
  D.q=q; D.k=k; D.v=v; D.o=o; D.k_type=FA_BF16; D.v_type=FA_BF16; D.causal=1; D.pool=pool;
  size_t wsb; if(fa_attn_workspace_size(&D,&wsb)!=FA_OK){fprintf(stderr,"%s\n",fa_last_error());return 1;} D.workspace=fa_aligned_alloc(wsb,64); D.workspace_size=wsb;
  cj j; j.n=(size_t)512<<20; j.src=malloc(j.n); j.dst=malloc(j.n); j.parts=(int)(j.n>>18); memset(j.src,1,j.n); memset(j.dst,2,j.n);
  double call[32], kvmb=2.0*sk*hk*d*2/1e6;
  printf("TSC %.2f GHz, %d threads, sk %lld, bf16 K/V %.1f MB\n", ghz, T, (long long)sk, kvmb);
  for(r=-1;r<reps;r++){ int cold = 1;
    if (cold) { fa_pool_parallel_for(pool, j.parts, cpart, &j); fa_pool_parallel_for(pool, j.parts, rpart, &j); }
    memset(fa_ph_first,0,sizeof fa_ph_first); memset(fa_ph_busy,0,sizeof fa_ph_busy); memset(fa_ph_n,0,sizeof fa_ph_n);
    memset(fa_ph_mfirst,0,sizeof fa_ph_mfirst); memset(fa_ph_mbusy,0,sizeof fa_ph_mbusy); memset(fa_ph_last,0,sizeof fa_ph_last); memset(fa_ph_mlast,0,sizeof fa_ph_mlast);
    unsigned long long a=rd(); fa_attn_forward(&D); unsigned long long b=rd();
    if(r<0) continue;
    call[r]=(b-a)/ghz/1e3;
    { unsigned long long mn=~0ull, mx=0; double bz=0; for(w=0;w<T;w++){ if(fa_ph_first[w]&&fa_ph_first[w]<mn) mn=fa_ph_first[w]; if(fa_ph_first[w]>mx) mx=fa_ph_first[w]; bz+=fa_ph_busy[w]; }
      printf("rep %2d: call %6.1f us, first task starts %5.1f..%5.1f us, split phase ends %6.1f, merge %5.1f us, mean busy %6.1f\n", r, call[r], (mn-a)/ghz/1e3, (mx-a)/ghz/1e3, (fa_ph_split_end-a)/ghz/1e3, (b-fa_ph_split_end)/ghz/1e3, bz/T/ghz/1e3); }
    if (getenv("VERBOSE") && (r == reps-1 || r == 0)) {
      printf("call %d: %.1f us (%.1f GB/s); entry %.1f, prepared %.1f, parallel_for %.1f, split phase ends at %.1f us\n", r, call[r], kvmb/call[r]*1e3, (fa_ph_t0-a)/ghz/1e3, (fa_ph_prep-a)/ghz/1e3, (fa_ph_pf-a)/ghz/1e3, (fa_ph_split_end-a)/ghz/1e3);
      printf("  worker: tasks, first start, last end, busy (us) | merge first, last, busy\n");
      for(w=0;w<T;w++) printf("  %2d: %3llu %6.1f %6.1f %6.1f | %6.1f %6.1f %6.1f\n", w, fa_ph_n[w], fa_ph_first[w]? (fa_ph_first[w]-a)/ghz/1e3:-1, fa_ph_last[w]?(fa_ph_last[w]-a)/ghz/1e3:-1, fa_ph_busy[w]/ghz/1e3,
          fa_ph_mfirst[w]?(fa_ph_mfirst[w]-a)/ghz/1e3:-1, fa_ph_mlast[w]?(fa_ph_mlast[w]-a)/ghz/1e3:-1, fa_ph_mbusy[w]/ghz/1e3);
    }
  }
  qsort(call,reps,sizeof*call,cmpd); printf("cold calls: median %.1f us (min %.1f, max %.1f)\n", call[reps/2], call[0], call[reps-1]);
  /* warm */
  for(r=0;r<reps;r++){ unsigned long long a=rd(); memset(fa_ph_first,0,sizeof fa_ph_first); fa_attn_forward(&D); call[r]=(rd()-a)/ghz/1e3;
    if (r==reps-1) { printf("warm call: %.1f us; prepared %.1f, parallel_for %.1f, first starts:", call[r], (fa_ph_prep-a)/ghz/1e3, (fa_ph_pf-a)/ghz/1e3); for(w=0;w<T;w++) printf(" %.1f", (fa_ph_first[w]-a)/ghz/1e3); printf("\n"); } }
  qsort(call,reps,sizeof*call,cmpd); printf("warm calls: median %.1f us\n", call[reps/2]);
  return 0; }
