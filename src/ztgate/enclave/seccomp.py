"""A seccomp filter for enclaves: the system calls no MCP server needs, refused.

A deny-list in classic BPF, handed to bwrap (`--seccomp FD`), which loads it
just before it starts the relay, so it binds everything in the enclave. It
refuses what sandbox escapes and kernel exploits reach for and servers do
not use: new namespaces (`unshare`, `setns`, `clone` with a `CLONE_NEW*`
flag; `clone3`, whose flags a filter cannot read, answers ENOSYS so that
the C library falls back to `clone`), mounts, `ptrace` and
`process_vm_*`, keyrings, `bpf`, `perf_event_open`, `userfaultfd`,
`io_uring` (ENOSYS: libraries fall back to plain I/O), kernel modules,
kexec, file handles, clock and host settings. A call from another ABI
(i386 `int 0x80`, x32) kills the process.

x86_64 only: on other architectures there is no filter (docs/enclaves.md).
"""

from __future__ import annotations

import errno
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
CLONE = 56
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
# | CLONE_NEWPID | CLONE_NEWNET
CLONE_NEW_FLAGS = 0x7E020000

# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
REFUSED_X86_64 = {
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "ustat": 136,
    "sysfs": 139,
    "vhangup": 153,
    "pivot_root": 155,
    "_sysctl": 156,
    "adjtimex": 159,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
}
# Refused as if the kernel did not have them, so that callers fall back.
NOT_IMPLEMENTED = {"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}

_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL_PROCESS = 0x80000000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian)


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def filter_program() -> bytes | None:
    """The filter as `struct sock_filter` bytes, or None on an architecture without one."""
    if platform.machine() != "x86_64":
        return None
    program = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ, AUDIT_ARCH_X86_64, jt=1),
        _op(_RET, _KILL_PROCESS),
        _op(_LD_W_ABS, _NR),
        _op(_JGE, X32_SYSCALL_BIT, jf=1),
        _op(_RET, _KILL_PROCESS),
    ]
    for name, number in sorted(REFUSED_X86_64.items(), key=lambda item: item[1]):
        code = errno.ENOSYS if name in NOT_IMPLEMENTED else errno.EPERM
        program += [_op(_JEQ, number, jf=1), _op(_RET, _ERRNO | code)]
    program += [
        _op(_JEQ, CLONE, jf=3),
        _op(_LD_W_ABS, _ARG0),
        _op(_JSET, CLONE_NEW_FLAGS, jf=1),
        _op(_RET, _ERRNO | errno.EPERM),
        _op(_RET, _ALLOW),
    ]
    return b"".join(program)
