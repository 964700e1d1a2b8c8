"""The pieces of scripts/bench.py: QEMU command lines from scripts/run.sh --print-qemu,
running QEMU and parsing the hypervisor's console (common), the ptdump parser and SVG
renderer (ptdump_svg, also the command scripts/ptdump-svg.py), one function per benchmark
(sections, phases), Xen for the boot comparison (xen) and the report (report)."""
