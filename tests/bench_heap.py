"""Groups a heaptrack profile's live heap by the first non-generic frames
of each allocation's backtrace (function and file), the grouping used in
docs/performance.md:

    heaptrack_print -f ferry-one-channel-200.gz --flamegraph-cost-type leaked -F stacks.txt
    python3 tests/bench_heap.py stacks.txt [DEPTH] [TOP] | c++filt

(`tests/irc/bench_scale.py` with BENCH_HEAPTRACK=DIR writes the profiles,
ferry killed right after the measurement, so "leaked" is the live heap.)
"""
import collections
import re
import sys

GENERIC = set("alloc.rs mod.rs map.rs raw.rs core.rs harness.rs panicking.rs panic.rs unwind_safe.rs function.rs boxed.rs spec_extend.rs impls.rs unsafe_cell.rs node.rs entry.rs spec_from_iter.rs spec_from_iter_nested.rs iterator.rs clone.rs string.rs slice.rs convert.rs option.rs result.rs pool.rs lifecycle.rs backtrace.rs unix.rs pthread_create.c clone3.S thread_info.rs current.rs future.rs poll.rs context.rs scoped.rs worker.rs runtime.rs park.rs task.rs list.rs chan.rs block.rs borrow.rs fmt.rs cow.rs rc.rs sync.rs arc.rs fold.rs map_try.rs try_trait.rs range.rs ptr.rs maybe_uninit.rs cell.rs once.rs lazy.rs hash.rs set.rs btree.rs append.rs navigate.rs search.rs mem.rs intrinsics.rs ops.rs deref.rs index.rs".split())


def main():
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    agg = collections.Counter(); total = 0
    for l in open(sys.argv[1]):
        st, _, cost = l.rstrip("\n").rpartition(" ")
        cost = int(cost); total += cost
        fr = []
        for f in st.split(";"):
            m = re.match(r"(.*) \((.*)\)$", f)
            if m and m.group(2) not in GENERIC:
                fr.append(f"{m.group(1)[:50]} ({m.group(2)})")
        key = " < ".join(reversed(fr[-depth:])) if fr else "(std/runtime only)"
        agg[key] += cost
    print(f"total {total/1e6:.2f} MB")
    for k, c in agg.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 30):
        print(f"{c/1e6:7.2f} MB {100*c/total:5.1f}%  {k}")


if __name__ == "__main__":
    main()
