# bench/probe_causal/threads.py - for probe_threads.c: makes the phase timers that phases.py added
# (argv[1] -> argv[2]) safe on several threads (atomic adds) and adds a timer around each unit,
# summed into fa_ph[7]. Built by make build/probe_threads (see threads.sh).
import re
import sys
s = open(sys.argv[1]).read()
def rep(old, new):
    global s
    assert s.count(old) == 1, old
    s = s.replace(old, new)
# fa_ph[i] += X;  ->  __atomic_fetch_add(&fa_ph[i], X, relaxed);
s, n = re.subn(r'fa_ph\[(\d)\] \+= ([^;]+);', r'__atomic_fetch_add(&fa_ph[\1], \2, __ATOMIC_RELAXED);', s)
assert n >= 6, n
s, n = re.subn(r'fa_ph\[6\]\+\+;', r'__atomic_fetch_add(&fa_ph[6], 1, __ATOMIC_RELAXED);', s)
assert n == 1, n
rep('static void fa__attn_unit(const fa__attn_plan *p,', 'static void fa__attn_unit_real(const fa__attn_plan *p,')
rep('static void fa__attn_unit_at(', '''static void fa__attn_unit(const fa__attn_plan *p, const fa__attn_kernels *K, const fa__unit *u,
                          const fa__attn_ws *w, int64_t split, float *part_o, int64_t part_rs)
{
    unsigned long long a = __builtin_ia32_rdtsc();
    fa__attn_unit_real(p, K, u, w, split, part_o, part_rs);
    __atomic_fetch_add(&fa_ph[7], __builtin_ia32_rdtsc() - a, __ATOMIC_RELAXED);
}
static void fa__attn_unit_at(''')
open(sys.argv[2], 'w').write(s)
