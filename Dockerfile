# wsd container image: a release build of the `wsd` binary on debian:bookworm-slim, run as a
# non-root user. Build and run:
#
#   docker build -t wsd .
#   docker run --rm -p 3000:3000 \
#     --ulimit nofile=1048576:1048576 \
#     --stop-timeout 45 \
#     --cpuset-cpus 0-3 \
#     wsd
#
# --ulimit nofile=1048576:1048576
#   Every WebSocket connection is one file descriptor. wsd raises its soft RLIMIT_NOFILE to the
#   hard limit at start (logged as `open file limit limit=N`), so the HARD limit is the ceiling on
#   connections. Without --ulimit a container inherits whatever dockerd/containerd were started
#   with (it has been `infinity`, 1048576 and 1024:524288 across Docker releases and distros), so
#   set it explicitly. The hard value cannot exceed the host's `fs.nr_open` (1048576 by default);
#   see sysctl/README.md for the host side. Check it from the host with
#   `docker exec <ctr> cat /proc/1/limits | grep 'open files'`.
#
# --stop-timeout / `docker stop -t` / compose `stop_grace_period`
#   `docker stop` sends STOPSIGNAL (SIGTERM) and SIGKILLs after 10 s by default. On SIGTERM wsd
#   stops accepting, answers /health with 503 draining, sends queued data and then close 1001 on
#   every connection, and exits 0 once they are closed or SHUTDOWN_TIMEOUT (default 30 s) passes
#   (docs/OPERATIONS.md, "Graceful shutdown"). Give Docker more time than the drain, e.g. 45 s, or clients
#   lose the clean close.
#
# CPUs
#   CLUSTER_WORKERS=auto starts one worker per CPU in the process's affinity mask, which is what
#   --cpuset-cpus sets. A CFS quota (--cpus=2) does NOT shrink that mask: on a 64-CPU host auto
#   would start 64 throttled workers. With --cpus, also set -e CLUSTER_WORKERS=<n>.
#
# io_uring and Docker's default seccomp profile
#   Docker Engine 25.0 and later block io_uring_setup, io_uring_enter and io_uring_register in the
#   default seccomp profile (moby/moby#46762, which followed containerd#9320; containerd's own
#   RuntimeDefault profile, used by Kubernetes, blocks them from containerd 2.0). The calls fail
#   with EPERM, and wsd (WSD_IO=auto, the default) falls back to epoll with one start-up line:
#     WARN wsd::server: io_uring unavailable, falling back to epoll error=Operation not permitted (os error 1)
#     INFO wsd::server: wsd listening addr=0.0.0.0:3000 workers=4 io=epoll
#   GET /health also reports "io":"epoll". Everything works on epoll; io_uring is the faster path.
#   To allow io_uring, run with a seccomp profile that permits those three calls: take Docker's
#   default profile (github.com/moby/profiles, seccomp/default.json), add "io_uring_setup",
#   "io_uring_enter" and "io_uring_register" to the names of the first SCMP_ACT_ALLOW rule, and
#     docker run --security-opt seccomp=/path/to/wsd-seccomp.json ...
#   (or set it daemon-wide with "seccomp-profile" in daemon.json). For a quick test only,
#   --security-opt seccomp=unconfined drops syscall filtering altogether. The host must also allow
#   io_uring: kernel 6.1 or later (wsd's ring uses DEFER_TASKRUN) and sysctl
#   kernel.io_uring_disabled=0. WSD_IO=uring makes wsd refuse to start instead of falling back.
#
# TLS (wss://)
#   Mount the certificate and key read-only and name them: the files must be readable by uid
#   10001, and the key by nobody else you do not trust.
#     docker run ... -v /etc/wsd/tls:/etc/wsd/tls:ro \
#       -e SSL_CERT=/etc/wsd/tls/fullchain.pem -e SSL_KEY=/etc/wsd/tls/privkey.pem wsd
#   `docker kill -s HUP <ctr>` reloads them (docs/TLS.md). With TLS on, the health check below
#   cannot speak HTTPS (no openssl in the image): it checks instead that wsd answers a plaintext
#   request on its port with a TLS alert record, which only a live event loop sends.

# Host sysctls
#   net.core.somaxconn, net.ipv4.tcp_max_syn_backlog and net.ipv4.ip_local_port_range are per
#   network namespace: a container on a bridge network does not see the host's values from
#   sysctl/99-wsd.conf, it starts from the kernel defaults. Set them per container with
#   --sysctl net.core.somaxconn=4096 --sysctl net.ipv4.tcp_max_syn_backlog=8192 (with
#   --network host the host's values apply). fs.file-max, fs.nr_open,
#   net.core.netdev_max_backlog and nf_conntrack_max are host-wide: set them on the host.

# Builder image. Pinned to the toolchain the project is tested with; the crate needs Rust 1.85+
# (edition 2024). `--build-arg RUST_IMAGE=rust:1-bookworm` follows the newest stable instead.
# Build and runtime are both Debian 12 (bookworm), so the binary's glibc matches the runtime's.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src

# Dependency layer: only the manifests, the lockfile and stub sources, so that this (slow) layer
# is rebuilt only when Cargo.toml, loadtest/Cargo.toml or Cargo.lock change. loadtest is a
# workspace member: cargo needs its manifest to resolve the workspace against Cargo.lock
# (--locked). benches/ is copied because Cargo.toml names its bench files explicitly and cargo
# refuses a manifest whose targets are missing.
COPY Cargo.toml Cargo.lock ./
COPY loadtest/Cargo.toml loadtest/Cargo.toml
COPY benches/ benches/
RUN mkdir -p src loadtest/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && cargo build --release -p wsd --locked \
    && rm -rf src loadtest/src

# The real sources. COPY keeps the files' modification times, which can be older than the stub
# build above, so touch them to make sure cargo rebuilds wsd instead of keeping the stub binary;
# the --version check fails the build if the stub (which prints nothing) slipped through anyway.
COPY src/ src/
COPY loadtest/src/ loadtest/src/
RUN touch src/lib.rs src/main.rs loadtest/src/main.rs \
    && cargo build --release -p wsd --locked \
    && version="$(./target/release/wsd --version)" \
    && echo "built: ${version}" \
    && case "${version}" in "wsd "*) ;; *) echo "target/release/wsd is not wsd" >&2; exit 1 ;; esac

# Runtime: Debian 12 slim (glibc, libgcc_s and bash are all wsd and its health check need).
# Distroless cc would be smaller but has no shell for the health check below.
FROM ${RUNTIME_IMAGE}

# A fixed, unprivileged uid/gid so volume permissions and PodSecurity runAsNonRoot checks are
# predictable. No home directory, no login shell.
RUN groupadd --system --gid 10001 wsd \
    && useradd --system --uid 10001 --gid wsd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin wsd

# Only the binary. The release profile keeps line-level debug info (debug = 1) so profiles have
# symbols: about 11 MB of the 13 MB binary, at no cost in speed. If image size matters more, add
# `&& objcopy --strip-debug target/release/wsd` to the build stage's last RUN.
COPY --from=build /src/target/release/wsd /usr/local/bin/wsd

USER 10001:10001

# wsd reads its configuration from the environment (flags override it); see README.md for every
# variable. HOST=0.0.0.0 is needed in a container: a loopback address would be unreachable
# through the published port.
ENV PORT=3000 HOST=0.0.0.0
EXPOSE 3000

# wsd drains on SIGTERM (close 1001 to every client, exit 0); a second signal exits at once.
STOPSIGNAL SIGTERM

# Health check without curl or wget in the image: bash opens a TCP connection through its
# /dev/tcp pseudo-path, sends GET /health and the check passes only on a 200 status line (wsd
# answers 200 {"status":"ok",...} while serving; with SSL_CERT set, a TLS alert: see "TLS" above).
# `timeout` (coreutils, in the slim image) bounds
# the read. It connects to 127.0.0.1:$PORT, so it works with HOST=0.0.0.0 (the default) or a
# dual-stack HOST=::, not with HOST set to one non-loopback address.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-3000} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && if [ -n \"${SSL_CERT:-}\" ]; then timeout 2 head -c 1 <&3 | od -An -tx1 | grep -q 15; else timeout 2 head -n 1 <&3 | grep -q '^HTTP/1\\.[01] 200 '; fi"]

# Exec form: wsd is PID 1 and receives SIGTERM itself (it installs handlers, so the PID-1
# signal rules do not swallow it; it starts no child processes, so no init is needed to reap).
ENTRYPOINT ["/usr/local/bin/wsd"]
