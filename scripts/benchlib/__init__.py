"""The pieces of scripts/bench.py: running QEMU and parsing the hypervisor's console
(common), the minimal table for a ptdump (minimal), one function per benchmark (sections),
Xen for the boot comparison (xen) and the report (report)."""
