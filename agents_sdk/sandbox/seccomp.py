"""The seccomp filter every sandboxed process runs under, compiled to BPF by libseccomp.

A deny list on top of bubblewrap's namespaces: the syscalls a code or shell tool never needs
and that widen the kernel surface an escape would use. They fail with EPERM (so programs see
an ordinary error, and a test can observe the refusal) instead of killing the process.
bubblewrap loads the program (``--seccomp FD``) just before it executes the command, so the
filter binds the command and everything it starts, and cannot be removed.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import tempfile

from agents_sdk.sandbox.errors import SandboxUnavailable

# Debugging and reading other processes, kernel and module control, mounts, namespaces,
# kernel keyrings, eBPF, perf, clocks, swap, and handle-based opens (the "shocker" escape).
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick",
    "unshare", "setns",
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "syslog", "acct", "swapon", "swapoff", "quotactl", "quotactl_fd",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "iopl", "ioperm", "vhangup", "personality",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init",
)

# clone() flags that create namespaces: a sandboxed process may not build its own.
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
_TIOCSTI = 0x5412  # pushes characters into the terminal's input: a classic escape to the parent shell
_TIOCLINUX = 0x541C
# Socket families a tool may open: Unix sockets (the egress proxy) and IPv4/IPv6 (which
# reach only the sandbox's own loopback). Netlink, packet, key, ALG, vsock, ... are refused.
ALLOWED_SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


@functools.cache
def filter_program() -> bytes:
    """The filter as a BPF program for this machine's architecture (built once per process).

    Raises SandboxUnavailable if libseccomp cannot be loaded.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:  # pyseccomp raises OSError if libseccomp.so.2 is missing
        raise SandboxUnavailable(
            f"the seccomp filter needs libseccomp (apt-get install libseccomp2) and pyseccomp: {exc}"
        ) from exc
    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(denied, name)
        except (ValueError, RuntimeError, OSError):  # a syscall this architecture does not have
            continue
    for flag in _CLONE_NAMESPACE_FLAGS:
        rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory where seccomp cannot read them; ENOSYS makes the C
    # library fall back to clone(), whose flags the rules above check.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rules.add_rule(denied, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    refused_family = seccomp.ERRNO(errno.EAFNOSUPPORT)
    highest = max(ALLOWED_SOCKET_FAMILIES)
    rules.add_rule(refused_family, "socket", seccomp.Arg(0, seccomp.GT, highest))
    for family in range(highest):
        if family not in ALLOWED_SOCKET_FAMILIES:
            rules.add_rule(refused_family, "socket", seccomp.Arg(0, seccomp.EQ, family))
    with tempfile.TemporaryFile() as program:
        rules.export_bpf(program)
        program.seek(0)
        return program.read()


def program_fd() -> int:
    """A pipe's read end holding the BPF program, for ``bwrap --seccomp FD`` (the caller closes it)."""
    program = filter_program()
    read_end, write_end = os.pipe()
    try:
        # A pipe holds 64 KiB; the program is a few hundred instructions of 8 bytes.
        os.write(write_end, program)
    finally:
        os.close(write_end)
    return read_end
