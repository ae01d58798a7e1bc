# bench/probe_causal/phases.py - adds time-stamp-counter phase timers to fa__attn_tile of a header
# that instrument.py has written (argv[1] -> argv[2]), for probe_phases.c: the row ranges, the K/V
# row loads, the K transpose, S, the rows' softmax and P V, summed per call into fa_ph[0..5]
# (fa_ph[6] counts the tiles). x86-64 only (rdtsc). Not part of the build: see phases.sh.
import sys
s = open(sys.argv[1]).read()
def rep(old, new, n=1):
    global s
    assert s.count(old) == n, old
    s = s.replace(old, new)
rep('static void fa__attn_tile(const fa__unit_ctx *x, int64_t j0, int64_t j1, int64_t mask_pos, int phase)\n{\n',
    'unsigned long long fa_ph[8];\nstatic void fa__attn_tile(const fa__unit_ctx *x, int64_t j0, int64_t j1, int64_t mask_pos, int phase)\n{\n    unsigned long long t_0 = __builtin_ia32_rdtsc(), t_1 = 0, t_2 = 0, t_3 = 0, t_4 = 0, t_5 = 0;\n')
rep('    /* V tile, padded; K tile transposed for the register-blocked S', '    t_1 = __builtin_ia32_rdtsc();\n    /* V tile, padded; K tile transposed for the register-blocked S')
rep('    if (dec) {\n        /* S is done */', '    t_2 = __builtin_ia32_rdtsc();\n    if (dec) {\n        /* S is done */')
rep('        K->qk(x->qf + ra * dk, dk, w->kt, w->s + ra * FA__BK, nra, cut ? ncols : NULL);\n',
    '        t_3 = __builtin_ia32_rdtsc();\n        K->qk(x->qf + ra * dk, dk, w->kt, w->s + ra * FA__BK, nra, cut ? ncols : NULL);\n')
rep('    if (rb > x->nrows) rb = x->nrows; /* past here', '    t_4 = __builtin_ia32_rdtsc();\n    if (rb > x->nrows) rb = x->nrows; /* past here')
rep('    if (!any) return;\n', '    t_5 = __builtin_ia32_rdtsc();\n    if (!any) return;\n')
i = s.index('\n/* The part of a several-kv-head unit that reads kv head')
j = s.rindex('\n}\n', 0, i)
s = s[:j] + '''
    if (t_3) {
        unsigned long long t_6 = __builtin_ia32_rdtsc();
        fa_ph[0] += t_1 - t_0; fa_ph[1] += t_2 - t_1; fa_ph[2] += t_3 - t_2; fa_ph[3] += t_4 - t_3;
        fa_ph[4] += t_5 - t_4; fa_ph[5] += t_6 - t_5; fa_ph[6]++;
    }
''' + s[j:]
open(sys.argv[2], 'w').write(s)
