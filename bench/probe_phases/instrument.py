# bench/probe_phases/instrument.py - writes a copy of flashattn.h (argv[1] -> argv[2]) with rdtsc
# around fa__attn_prepare, each split task, each merge task and the two parallel_for calls of
# fa_attn_forward, for probe_decode.c. Not part of the build: see run.sh.
import sys
s=open(sys.argv[1]).read()
def rep(old,new):
    global s
    assert s.count(old)==1,old[:60]; s=s.replace(old,new)
rep('static void fa__attn_task(void *ctx, int64_t i, int worker)\n{','''unsigned long long fa_ph_t0, fa_ph_first[64], fa_ph_last[64], fa_ph_busy[64], fa_ph_n[64], fa_ph_mfirst[64], fa_ph_mlast[64], fa_ph_mbusy[64];
unsigned long long fa_ph_split_end, fa_ph_merge_start;
static void fa__attn_task_real(void *ctx, int64_t i, int worker);
static void fa__attn_task(void *ctx, int64_t i, int worker)
{
    unsigned long long a = __builtin_ia32_rdtsc(), b;
    fa__attn_task_real(ctx, i, worker);
    b = __builtin_ia32_rdtsc();
    if (worker < 64) { if (!fa_ph_first[worker]) fa_ph_first[worker] = a; fa_ph_last[worker] = b; fa_ph_busy[worker] += b - a; fa_ph_n[worker]++; }
}
static void fa__attn_task_real(void *ctx, int64_t i, int worker)
{''')
rep('static void fa__attn_merge_task(void *ctx, int64_t i, int worker)\n{','''static void fa__attn_merge_task_real(void *ctx, int64_t i, int worker);
static void fa__attn_merge_task(void *ctx, int64_t i, int worker)
{
    unsigned long long a = __builtin_ia32_rdtsc(), b;
    fa__attn_merge_task_real(ctx, i, worker);
    b = __builtin_ia32_rdtsc();
    if (worker < 64) { if (!fa_ph_mfirst[worker]) fa_ph_mfirst[worker] = a; fa_ph_mlast[worker] = b; fa_ph_mbusy[worker] += b - a; }
}
static void fa__attn_merge_task_real(void *ctx, int64_t i, int worker)
{''')
rep('''    st = fa_pool_parallel_for(pool, p.units * p.splits, fa__attn_task, &job);
    if (st == FA_OK && p.splits > 1) st =''','''    st = fa_pool_parallel_for(pool, p.units * p.splits, fa__attn_task, &job);
    fa_ph_split_end = __builtin_ia32_rdtsc();
    if (st == FA_OK && p.splits > 1) st =''')
rep('''    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    ws = d->workspace;''','''    fa_ph_t0 = __builtin_ia32_rdtsc();
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    fa_ph_prep = __builtin_ia32_rdtsc();
    ws = d->workspace;''')
rep('unsigned long long fa_ph_split_end, fa_ph_merge_start;','unsigned long long fa_ph_split_end, fa_ph_merge_start, fa_ph_prep, fa_ph_pf;')
rep('''    st = fa_pool_parallel_for(pool, p.units * p.splits, fa__attn_task, &job);
    fa_ph_split_end''','''    fa_ph_pf = __builtin_ia32_rdtsc();
    st = fa_pool_parallel_for(pool, p.units * p.splits, fa__attn_task, &job);
    fa_ph_split_end''')
open(sys.argv[2],'w').write(s)
