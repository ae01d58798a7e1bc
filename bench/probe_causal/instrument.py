# bench/probe_causal/instrument.py - writes a copy of flashattn.h (argv[1] -> argv[2]) in which
# fa__attn_unit can be told to run only part of a causal unit's keys, for probe_causal.c:
# fa_pc_mode 1 = the keys left of the unit's diagonal block, 2 = only the diagonal block,
# 3 = no key at all (what a unit costs with no tile). Not part of the build: see run.sh.
import sys
s = open(sys.argv[1]).read()
old = '    if (p->splits > 1 && kmax > kmin) { /* this split\'s share: whole pieces of piece keys */'
assert s.count(old) == 1, 'fa__attn_unit changed: update instrument.py'
s = s.replace(old, '''    if (fa_pc_mode == 1 && d->causal) kmax = u->i0 < kmax ? u->i0 : kmax;
    if (fa_pc_mode == 2 && d->causal) kmin = u->i0 > kmin ? u->i0 : kmin;
    if (fa_pc_mode == 3) kmax = kmin;
''' + old)
old = 'static void fa__attn_unit(const fa__attn_plan *p,'
assert s.count(old) == 1
s = s.replace(old, 'int fa_pc_mode;\n' + old)
open(sys.argv[2], 'w').write(s)
