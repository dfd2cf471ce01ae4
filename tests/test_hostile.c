/*
 * A hostile machine: files, directories, descriptors and sizes that someone
 * else controls. Tests that need another user create one (useradd, as root)
 * and run the hostile step as that user in a forked child; tests that need a
 * small tmpfs or a memory cgroup make them. Each skips with a printed reason
 * where the machine does not allow it.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "segment.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* ---- Helpers ------------------------------------------------------------ */

static void skip_because(const char *why)
{
    fprintf(stderr, "test_hostile: skipped: %s\n", why);
    cr_skip_test("%s", why);
}

static void skip_on_heap(void)
{
    if (test_heap_forced())
        skip_because("needs named shared memory files (SHMRING_FORCE_HEAP is set)");
}

/* Another local user, made for one test and removed after it. */
struct other_user {
    char name[32];
    uid_t uid;
    gid_t gid;
};

/* A directory for segments: a small tmpfs (size_kib > 0), or a plain temporary directory. */
struct scratch {
    char path[64];
    int mounted;
    char *saved;
};

/* What a failed test left behind is removed by the suite's fini. */
static struct other_user made_user; /* copies: the test's own are on its stack */
static int have_user;
static struct scratch made_scratch;
static int have_scratch;

static void user_make(struct other_user *u)
{
    if (geteuid() != 0)
        skip_because("needs root to create another user (useradd)");
    /* Users left by a test process that died (named after its pid) go first. */
    struct passwd *old;
    setpwent();
    while ((old = getpwent()) != NULL) {
        int owner = 0;
        if (sscanf(old->pw_name, "shmrh%d", &owner) == 1 && owner > 0 && kill(owner, 0) != 0 &&
            errno == ESRCH) {
            char del[96];
            snprintf(del, sizeof del, "userdel %s >/dev/null 2>&1", old->pw_name);
            if (system(del) != 0)
                fprintf(stderr, "test_hostile: %s failed\n", del);
        }
    }
    endpwent();
    snprintf(u->name, sizeof u->name, "shmrh%d", (int)getpid() % 1000000);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "userdel %s >/dev/null 2>&1; useradd -M -N -s /bin/false %s", u->name,
             u->name);
    if (system(cmd) != 0)
        skip_because("useradd failed: cannot create another user here");
    struct passwd *pw = getpwnam(u->name);
    cr_assert_not_null(pw, "getpwnam(%s) after useradd", u->name);
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    made_user = *u;
    have_user = 1;
}

static void user_remove(struct other_user *u)
{
    have_user = 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "userdel %s >/dev/null 2>&1", u->name);
    if (system(cmd) != 0)
        fprintf(stderr, "test_hostile: userdel %s failed\n", u->name);
}

/* In a forked child: become the other user for good. */
static void become(const struct other_user *u)
{
    if (setgroups(0, NULL) != 0 || setgid(u->gid) != 0 || setuid(u->uid) != 0)
        _exit(99);
}

static void scratch_make(struct scratch *s, unsigned size_kib, mode_t mode)
{
    snprintf(s->path, sizeof s->path, "/tmp/shmring-hostile-XXXXXX");
    cr_assert_not_null(mkdtemp(s->path), "mkdtemp: %s", strerror(errno));
    s->mounted = 0;
    if (size_kib > 0) {
        char opts[64];
        snprintf(opts, sizeof opts, "size=%uk,mode=%o", size_kib, (unsigned)mode);
        if (mount("tmpfs", s->path, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
            int err = errno;
            rmdir(s->path);
            char why[128];
            snprintf(why, sizeof why, "cannot mount a small tmpfs here: %s", strerror(err));
            skip_because(why);
        }
        s->mounted = 1;
    }
    const char *old = getenv("SHMRING_SHM_DIR");
    s->saved = old != NULL ? strdup(old) : NULL;
    made_scratch = *s;
    have_scratch = 1;
    cr_assert_eq(chmod(s->path, mode), 0);
    cr_assert_eq(setenv("SHMRING_SHM_DIR", s->path, 1), 0);
}

static void scratch_remove(struct scratch *s)
{
    have_scratch = 0;
    test_remove_dir(s->path); /* files only; rmdir fails while mounted */
    if (s->mounted)
        umount2(s->path, MNT_DETACH);
    rmdir(s->path);
    if (s->saved != NULL)
        setenv("SHMRING_SHM_DIR", s->saved, 1);
    else
        unsetenv("SHMRING_SHM_DIR");
    free(s->saved);
}

/* The path of a name in the scratch directory (four buffers in turn: two per call are fine). */
static const char *path_in(const struct scratch *s, const char *name)
{
    static char buf[4][512];
    static unsigned next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s%s", s->path, name);
    return p;
}

/*
 * Run the shmring tool (as `as` when not NULL) with stdout and stderr into
 * out (cap bytes, NUL-terminated). Returns its exit code, or 128 + signal.
 */
static int run_tool(const struct other_user *as, char *out, size_t cap, const char *a1,
                    const char *a2)
{
    const char *tool = test_tool();
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (as != NULL)
            become(as);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        execl(tool, "shmring", a1, a2, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(pfd[0], out + n, cap - 1 - n)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0 && (n += (size_t)r) == cap - 1)
            break;
    out[n] = '\0';
    close(pfd[0]);
    return test_wait_child(pid);
}

/* The header page of a real, freshly made state table of `entries` x `value_size`, and its size. */
static void state_image(uint32_t entries, uint32_t value_size, struct shmring__hdr *h,
                        uint64_t *total)
{
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = entries, .value_size = value_size,
                                  .flags = SHMRING_FORCE_MEMFD);
    shmring_state_t *s = NULL;
    int rc = shmring_state_create(NULL, &cfg, &s);
    cr_assert_eq(rc, 0, "state create: %s", shmring_strerror(rc));
    int fd = shmring_state_fd(s);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(pread(fd, h, sizeof *h, 0), (ssize_t)sizeof *h);
    *total = (uint64_t)st.st_size;
    shmring_state_close(s);
}

/* The header page of a real ring of slots x slot_size, and its size. */
static void ring_image(uint32_t slots, uint32_t slot_size, struct shmring__hdr *h, uint64_t *total)
{
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = slots, .slot_size = slot_size, .flags = SHMRING_FORCE_MEMFD);
    shmring_t *r = NULL;
    int rc = shmring_create(NULL, &cfg, &r);
    cr_assert_eq(rc, 0, "ring create: %s", shmring_strerror(rc));
    struct stat st;
    cr_assert_eq(fstat(shmring_fd(r), &st), 0);
    cr_assert_eq(pread(shmring_fd(r), h, sizeof *h, 0), (ssize_t)sizeof *h);
    *total = (uint64_t)st.st_size;
    shmring_close(r);
}

/* The pid of a process that has exited and been reaped. */
static int32_t dead_pid(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(0);
    test_wait_child(pid);
    return (int32_t)pid;
}

/* Write a header page at path and extend the file (sparse) to total bytes. */
static int plant(const char *path, mode_t mode, const struct shmring__hdr *h, uint64_t total)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fchmod(fd, mode) != 0 || pwrite(fd, h, sizeof *h, 0) != (ssize_t)sizeof *h ||
        ftruncate(fd, (off_t)total) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

static uint64_t free_bytes(const char *path)
{
    struct statvfs v;
    cr_assert_eq(statvfs(path, &v), 0);
    return (uint64_t)v.f_bfree * v.f_frsize;
}

/* The ThreadSanitizer runner's shim has no suite fini: there, the users are swept by the next
 * run (user_make) and a failed test may leave its scratch directory. */
#ifndef SHMRING_TSAN_CRITERION_H
static void leftovers_remove(void)
{
    if (have_scratch) {
        if (chown(made_scratch.path, 0, 0) != 0)
            fprintf(stderr, "test_hostile: chown %s: %s\n", made_scratch.path, strerror(errno));
        scratch_remove(&made_scratch);
    }
    if (have_user)
        user_remove(&made_user);
}

TestSuite(hostile, .fini = leftovers_remove);
#endif

/* ---- 1. ls, gc and rm never fault on a planted file ---------------------- */

Test(hostile, planted_sparse_table_never_faults_ls_gc_rm, .timeout = 60)
{
    skip_on_heap();
    struct other_user u;
    user_make(&u);
    struct scratch d;
    scratch_make(&d, 2048, 01777); /* 2 MiB, sticky and world-writable like /dev/shm */
    /* A state table header claiming 130 MiB, owned by the other user, 0644, all holes. */
    struct shmring__hdr h;
    uint64_t total;
    state_image(65536, 1000, &h, &total);
    cr_assert_gt(total, 64ull << 20);
    h.creator_pid = dead_pid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        become(&u);
        _exit(plant(path_in(&d, "/planted"), 0644, &h, total) == 0 ? 0 : 1);
    }
    cr_assert_eq(test_wait_child(pid), 0, "planting as %s", u.name);
    uint64_t before = free_bytes(d.path);

    shmring_info_t info;
    int rc = shmring_inspect("/planted", &info);
    cr_assert_eq(rc, 0, "inspect: %s", shmring_strerror(rc));
    cr_assert_eq(info.kind, SHMRING_KIND_STATE);
    cr_assert_eq(info.uid, u.uid);
    cr_assert(info.health & SHMRING_HEALTH_FOREIGN);
    cr_assert(info.health & SHMRING_HEALTH_SPARSE);
    cr_assert_eq(info.fill, 0);

    static char out[16384];
    const char *cmds[][2] = {{"ls", NULL}, {"ls", "--json"}, {"gc", "--dry-run"}, {"gc", NULL}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int st = run_tool(NULL, out, sizeof out, cmds[i][0], cmds[i][1]);
        cr_assert_eq(st, 0, "shmring %s %s: status %d: %s", cmds[i][0],
                     cmds[i][1] ? cmds[i][1] : "", st, out);
        cr_assert_not_null(strstr(out, "planted"), "shmring %s: %s", cmds[i][0], out);
    }
    /* Root's gc left the other user's segment alone, and said so. */
    cr_assert_not_null(strstr(out, "skipped /planted"), "gc: %s", out);
    cr_assert_eq(access(path_in(&d, "/planted"), F_OK), 0);
    /* The same as the other user, who owns it: it is dead, so it goes. */
    int st = run_tool(&u, out, sizeof out, "gc", NULL);
    cr_assert_eq(st, 0, "gc as owner: status %d: %s", st, out);
    cr_assert_not_null(strstr(out, "removed /planted"), "gc as owner: %s", out);
    /* Nothing read allocated a page of the tmpfs. */
    cr_assert_geq(free_bytes(d.path), before);
    scratch_remove(&d);
    user_remove(&u);
}

Test(hostile, rm_refuses_a_planted_non_segment_and_reads_never_fault, .timeout = 60)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 1024, 0700);
    /* A ring header on a 64 MiB sparse file in a 1 MiB tmpfs: inspect and rm read, never map. */
    struct shmring__hdr h;
    uint64_t total;
    ring_image(16384, 4000, &h, &total);
    cr_assert_gt(total, 32ull << 20);
    cr_assert_eq(plant(path_in(&d, "/sparse"), 0600, &h, total), 0);
    static char out[4096];
    int st = run_tool(NULL, out, sizeof out, "ls", NULL);
    cr_assert_eq(st, 0, "ls: %d: %s", st, out);
    st = run_tool(NULL, out, sizeof out, "rm", "/sparse");
    cr_assert_eq(st, 0, "rm: %d: %s", st, out);
    cr_assert_neq(access(path_in(&d, "/sparse"), F_OK), 0);
    /* Junk with a shmring magic but a wrong size is not a segment: rm refuses it. */
    h.total_size += 4096;
    cr_assert_eq(plant(path_in(&d, "/junk"), 0600, &h, total), 0);
    st = run_tool(NULL, out, sizeof out, "rm", "/junk");
    cr_assert_eq(st, 1, "rm junk: %d: %s", st, out);
    cr_assert_eq(access(path_in(&d, "/junk"), F_OK), 0);
    scratch_remove(&d);
}

/* ---- 2. A memfd handed in must be sealed against shrinking ---------------- */

/* A copy of the segment behind fd in a new memfd, without seals. */
static int unsealed_copy(int fd)
{
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    int m = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(m, 0);
    cr_assert_eq(fchmod(m, 0600), 0);
    char *buf = malloc((size_t)st.st_size);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    cr_assert_eq(pwrite(m, buf, (size_t)st.st_size, 0), st.st_size);
    free(buf);
    return m;
}

Test(hostile, unsealed_memfd_refused_unless_insecure)
{
    skip_on_heap();
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .flags = SHMRING_FORCE_MEMFD);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create(NULL, &cfg, &p), 0);
    int m = unsealed_copy(shmring_fd(p));
    shmring_t *c = NULL;
    int rc = shmring_open_fd(m, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, -EACCES, "unsealed memfd: %s", shmring_strerror(rc));
    /* Sealed, it is accepted; so is the creator's own descriptor. */
    cr_assert_eq(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    rc = shmring_open_fd(m, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "sealed memfd: %s", shmring_strerror(rc));
    shmring_close(c);
    rc = shmring_open_fd(shmring_fd(p), SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "creator's memfd: %s", shmring_strerror(rc));
    shmring_close(c);
    close(m);
    /* SHMRING_ALLOW_INSECURE takes an unsealed one. */
    m = unsealed_copy(shmring_fd(p));
    rc = shmring_open_fd(m, SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &c);
    cr_assert_eq(rc, 0, "insecure: %s", shmring_strerror(rc));
    shmring_close(c);
    close(m);
    shmring_close(p);
}

/* A file of a tmpfs shm directory takes no seals (tmpfs reports F_SEAL_SEAL): not a memfd. */
Test(hostile, named_tmpfs_segment_by_descriptor_needs_no_seal)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 1024, 0700);
    shmring_t *p = test_make("/named", 16, 64, 0);
    int fd = open(path_in(&d, "/named"), O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    shmring_t *c = NULL;
    int rc = shmring_open_fd(fd, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "named tmpfs segment by descriptor: %s", shmring_strerror(rc));
    cr_assert_eq(shmring_backend(c), SHMRING_BACKEND_SHM);
    shmring_close(c);
    close(fd);
    shmring_close(p);
    scratch_remove(&d);
}

Test(hostile, unsealed_state_memfd_refused_unless_insecure)
{
    skip_on_heap();
    shmring_state_config_t cfg =
        SHMRING_STATE_CONFIG_INIT(.entries = 16, .value_size = 32, .flags = SHMRING_FORCE_MEMFD);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create(NULL, &cfg, &s), 0);
    int m = unsealed_copy(shmring_state_fd(s));
    shmring_state_t *o = NULL;
    int rc = shmring_state_open_fd(m, 0, &o);
    cr_assert_eq(rc, -EACCES, "unsealed memfd: %s", shmring_strerror(rc));
    rc = shmring_state_open_fd(m, SHMRING_ALLOW_INSECURE, &o);
    cr_assert_eq(rc, 0, "insecure: %s", shmring_strerror(rc));
    shmring_state_close(o);
    close(m);
    shmring_state_close(s);
}

/* ---- 3. A sparse segment on a full tmpfs is refused at open --------------- */

/* Fill the file system at dir until it is full. */
static void fill_up(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    static char page[4096];
    while (write(fd, page, sizeof page) > 0)
        ;
    close(fd);
}

Test(hostile, sparse_segment_on_full_tmpfs_refused_at_open, .timeout = 60)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 1024, 0700);
    const char *name = "/sparse";
    shmring_t *p = test_make(name, 64, 4000, 0); /* about 260 KiB */
    cr_assert_eq(shmring_push(p, "x", 1), 0);
    shmring_close(p);
    /* Cut holes in the slots (as a peer could), then fill the file system. */
    int fd = open(path_in(&d, name), O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, st.st_size - 4096),
                 0);
    close(fd);
    fill_up(d.path);
    /* A reader that opened it would die of SIGBUS at its first touch of a hole. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shmring_t *c = NULL;
        int rc = shmring_open(name, SHMRING_CONSUMER, &c);
        if (rc == 0) {
            char buf[4096];
            for (int i = 0; i < 64; i++)
                shmring_pop(c, buf, sizeof buf);
            _exit(0);
        }
        _exit(rc == -ENOSPC ? 3 : 4);
    }
    int status = test_wait_child(pid);
    cr_assert_eq(status, 3, "open of a sparse ring on a full tmpfs: child status %d", status);
    static char out[4096];
    status = run_tool(NULL, out, sizeof out, "stat", name);
    cr_assert_eq(status, 1, "shmring stat: %d: %s", status, out);
    /* With room again, the open backs every page and the ring works. */
    unlink(path_in(&d, "/filler"));
    shmring_t *c = NULL;
    int rc = shmring_open(name, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "open with room: %s", shmring_strerror(rc));
    char buf[4096];
    ssize_t n = shmring_pop(c, buf, sizeof buf);
    cr_assert_lt(n, 0, "pop of a message whose slot was cut away: %zd", n);
    cr_assert_eq(stat(path_in(&d, name), &st), 0);
    cr_assert_geq((uint64_t)st.st_blocks * 512u, (uint64_t)st.st_size);
    shmring_close(c);
    scratch_remove(&d);
}

/* ---- 4. A leased squatted name is refused at once ------------------------ */

static volatile sig_atomic_t lease_broken;

static void on_lease_break(int sig)
{
    (void)sig;
    lease_broken = 1;
}

Test(hostile, leased_squatted_name_refused_without_breaking_the_lease, .timeout = 120)
{
    skip_on_heap();
    struct other_user u;
    user_make(&u);
    struct scratch d;
    scratch_make(&d, 0, 01777);
    int go[2], back[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(back), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        become(&u);
        close(go[1]);
        close(back[0]);
        signal(SIGIO, on_lease_break);
        int fd = open(path_in(&d, "/squat"), O_RDONLY | O_CREAT | O_EXCL, 0644);
        char r = 'n';
        if (fd < 0)
            r = 'o';
        else if (fcntl(fd, F_SETLEASE, F_RDLCK) != 0)
            r = 'l';
        if (write(back[1], &r, 1) != 1 || r != 'n')
            _exit(1);
        /* Release the lease as soon as someone breaks it: an open that waits for
         * the break then goes on at once, and the break is recorded. */
        char c;
        while (read(go[0], &c, 1) < 0 && errno == EINTR)
            if (lease_broken)
                fcntl(fd, F_SETLEASE, F_UNLCK);
        r = lease_broken ? 'b' : 'k';
        _exit(write(back[1], &r, 1) == 1 ? 0 : 1);
    }
    close(go[0]);
    close(back[1]);
    char r = 0;
    cr_assert_eq(read(back[0], &r, 1), 1);
    if (r != 'n') {
        close(go[1]);
        test_wait_child(pid);
        scratch_remove(&d);
        user_remove(&u);
        skip_because(r == 'l' ? "no file leases on this file system" : "cannot create the file");
    }
    shmring_t *c = NULL;
    int rc = shmring_open("/squat", SHMRING_CONSUMER, &c);
    shmring_state_t *s = NULL;
    int src = shmring_state_open("/squat", 0, &s);
    shmring_info_t info;
    int irc = shmring_inspect("/squat", &info);
    close(go[1]);
    cr_assert_eq(read(back[0], &r, 1), 1);
    cr_assert_eq(test_wait_child(pid), 0);
    cr_assert_eq(rc, -EACCES, "open: %s", shmring_strerror(rc));
    cr_assert_eq(src, -EACCES, "state open: %s", shmring_strerror(src));
    cr_assert_eq(irc, -EPROTO, "inspect: %s", shmring_strerror(irc));
    cr_assert_eq(r, 'k', "the squatter's lease was broken: the open waited on it");
    scratch_remove(&d);
    user_remove(&u);
}

Test(hostile, fifo_at_a_segment_name_never_blocks)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    cr_assert_eq(mkfifo(path_in(&d, "/fifo"), 0600), 0);
    shmring_t *c = NULL;
    int rc = shmring_open("/fifo", SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, -EPROTO, "open: %s", shmring_strerror(rc));
    shmring_info_t info;
    rc = shmring_inspect("/fifo", &info);
    cr_assert_eq(rc, -EPROTO, "inspect: %s", shmring_strerror(rc));
    scratch_remove(&d);
}

/* ---- 5. The shm directory: checked once, every step relative to it -------- */

Test(hostile, shm_dir_of_another_user_refused)
{
    skip_on_heap();
    struct other_user u;
    user_make(&u);
    struct scratch d;
    scratch_make(&d, 0, 0755);
    /* A segment of ours in a directory that the other user owns (and could rename in). */
    shmring_t *p = test_make("/mine", 16, 64, 0);
    shmring_close(p);
    cr_assert_eq(chown(d.path, u.uid, u.gid), 0);
    test_quiet_log();
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .flags = SHMRING_NO_FALLBACK);
    int rc = shmring_create("/new", &cfg, &p);
    cr_assert_eq(rc, -EACCES, "create: %s", shmring_strerror(rc));
    rc = shmring_open("/mine", SHMRING_CONSUMER, &p);
    cr_assert_eq(rc, -EACCES, "open: %s", shmring_strerror(rc));
    shmring_info_t info;
    rc = shmring_inspect("/mine", &info);
    cr_assert_eq(rc, -EACCES, "inspect: %s", shmring_strerror(rc));
    rc = shmring_unlink("/mine");
    cr_assert_eq(rc, -EACCES, "unlink: %s", shmring_strerror(rc));
    static char out[4096];
    int st = run_tool(NULL, out, sizeof out, "rm", "/mine");
    cr_assert_eq(st, 1, "rm: %d: %s", st, out);
    cr_assert_eq(access(path_in(&d, "/mine"), F_OK), 0, "rm removed a file in a foreign dir");
    shmring_set_log(NULL, NULL);
    cr_assert_eq(chown(d.path, 0, 0), 0);
    scratch_remove(&d);
    user_remove(&u);
}

Test(hostile, shm_dir_writable_by_others_needs_the_sticky_bit)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    shmring_t *p = test_make("/mine", 16, 64, 0);
    shmring_close(p);
    test_quiet_log();
    const mode_t refused[] = {0777, 0770, 0730};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        cr_assert_eq(chmod(d.path, refused[i]), 0);
        int rc = shmring_open("/mine", SHMRING_OBSERVER, &p);
        cr_assert_eq(rc, -EACCES, "mode %04o: open: %s", refused[i], shmring_strerror(rc));
        rc = shmring_unlink("/mine");
        cr_assert_eq(rc, -EACCES, "mode %04o: unlink: %s", refused[i], shmring_strerror(rc));
    }
    const mode_t accepted[] = {01777, 01770, 0755, 0700};
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        cr_assert_eq(chmod(d.path, accepted[i]), 0);
        int rc = shmring_open("/mine", SHMRING_OBSERVER, &p);
        cr_assert_eq(rc, 0, "mode %04o: open: %s", accepted[i], shmring_strerror(rc));
        shmring_close(p);
    }
    shmring_set_log(NULL, NULL);
    scratch_remove(&d);
}

Test(hostile, unlink_inspected_leaves_a_replaced_name)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    shmring_t *p = test_make("/swap", 16, 64, 0);
    shmring_close(p);
    shmring_info_t old, now;
    cr_assert_eq(shmring_inspect("/swap", &old), 0);
    /* Another file is renamed onto the name between the check and the removal. */
    p = test_make("/other", 32, 64, 0);
    shmring_close(p);
    cr_assert_eq(rename(path_in(&d, "/other"), path_in(&d, "/swap")), 0);
    int rc = shmring_unlink_inspected("/swap", &old);
    cr_assert_eq(rc, -ESTALE, "stale: %s", shmring_strerror(rc));
    cr_assert_eq(shmring_inspect("/swap", &now), 0);
    cr_assert_eq(now.capacity, 32);
    cr_assert_eq(shmring_unlink_inspected("/swap", &now), 0);
    cr_assert_eq(shmring_unlink_inspected("/swap", &now), -ENOENT);
    cr_assert_eq(shmring_unlink_inspected("bad", &now), -EINVAL);
    cr_assert_eq(shmring_unlink_inspected("/swap", NULL), -EINVAL);
    scratch_remove(&d);
}

Test(hostile, setuid_program_ignores_the_environment, .timeout = 60)
{
#ifdef SANITIZED
    skip_because("sanitizer runtimes do not run in a setuid process (covered by the plain build)");
#endif
    skip_on_heap();
    struct other_user u;
    user_make(&u);
    /* A setuid copy of the tool: SHMRING_SHM_DIR must not reach it. */
    char dir[] = "/tmp/shmring-suid-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chmod(dir, 0755), 0);
    char copy[128], cmd[512];
    snprintf(copy, sizeof copy, "%s/shmring", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", test_tool(), copy);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(chown(copy, u.uid, u.gid), 0);
    cr_assert_eq(chmod(copy, 04755), 0);
    struct statvfs v;
    cr_assert_eq(statvfs(dir, &v), 0);
    if (v.f_flag & ST_NOSUID) {
        test_remove_dir(dir);
        user_remove(&u);
        skip_because("/tmp is mounted nosuid");
    }
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        setenv("SHMRING_SHM_DIR", "/nonexistent-shmring-dir", 1);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        execl(copy, "shmring", "ls", "--json", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    static char out[65536];
    size_t n = 0;
    ssize_t r;
    while ((r = read(pfd[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(pfd[0]);
    int st = test_wait_child(pid);
    test_remove_dir(dir);
    /* The setuid tool lists /dev/shm instead of failing on the directory it was given. */
    cr_assert_null(strstr(out, "nonexistent-shmring-dir"), "setuid tool used the env: %s", out);
    cr_assert_eq(st, 0, "setuid ls: %d: %s", st, out);
    user_remove(&u);
}

/* ---- 6. Too big for the process's memory: -ENOMEM, not an OOM kill -------- */

/* The memory cgroup of this process (v1 or v2) as a directory, or "" if none is writable. */
static int cgroup_dir(char *out, size_t cap, int *v2)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return -1;
    char line[1024];
    int found = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *c2 = strchr(strchr(line, ':') ? strchr(line, ':') + 1 : line, ':');
        if (c2 == NULL)
            continue;
        if (strstr(line, ":memory:") != NULL) {
            snprintf(out, cap, "/sys/fs/cgroup/memory%s", c2 + 1);
            *v2 = 0;
            found = 0;
            break;
        }
        if (strncmp(line, "0::", 3) == 0 &&
            access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
            snprintf(out, cap, "/sys/fs/cgroup%s", c2 + 1);
            *v2 = 1;
            found = 0;
        }
    }
    fclose(f);
    return found;
}

static int write_file(const char *dir, const char *file, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = errno;
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -err;
}

Test(hostile, huge_ring_in_a_small_memory_cgroup_gets_enomem, .timeout = 120)
{
    skip_on_heap();
    char base[512], cg[600];
    int v2 = 0;
    if (cgroup_dir(base, sizeof base, &v2) != 0)
        skip_because("no memory cgroup for this process");
    snprintf(cg, sizeof cg, "%s/shmring-hostile-%d", base, (int)getpid());
    if (mkdir(cg, 0755) != 0) {
        char why[700];
        snprintf(why, sizeof why, "cannot make a memory cgroup at %s: %s", cg, strerror(errno));
        skip_because(why);
    }
    int rc = write_file(cg, v2 ? "memory.max" : "memory.limit_in_bytes", "268435456");
    if (rc < 0) {
        rmdir(cg);
        skip_because("cannot set a memory limit on the new cgroup");
    }
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(5);
        /* 2 GiB of memfd ring in 256 MiB. */
        shmring_config_t cfg =
            SHMRING_CONFIG_INIT(.slots = 1u << 21, .slot_size = 1000, .flags = SHMRING_FORCE_MEMFD);
        shmring_t *r = NULL;
        int crc = shmring_create(NULL, &cfg, &r);
        shmring_config_t heap = cfg;
        heap.flags = SHMRING_FORCE_HEAP;
        shmring_t *h = NULL;
        int hrc = shmring_create(NULL, &heap, &h);
        _exit(crc == -ENOMEM && hrc == -ENOMEM ? 0 : crc == 0 ? 1 : 2);
    }
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    rc = write_file(cg, "cgroup.procs", text);
    cr_assert_eq(write(go[1], "g", 1), 1);
    int status = test_wait_child(pid);
    rmdir(cg);
    cr_assert_eq(rc, 0, "moving the child into the cgroup: %s", strerror(-rc));
    cr_assert_eq(status, 0, "2 GiB ring in a 256 MiB cgroup: child status %d (137: OOM-killed)",
                 status);
}

Test(hostile, ring_larger_than_physical_memory_gets_enomem)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t phys = (uint64_t)pages * (uint64_t)page;
    /* Heap backend: refused before anything is allocated, whatever the overcommit policy. */
    uint64_t slot = (2 * phys) >> 16;
    if (slot > SHMRING_MAX_SLOT_SIZE)
        skip_because("physical memory too large to exceed with one ring");
    shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 1u << 16, .slot_size = (uint32_t)slot,
                                               .flags = SHMRING_FORCE_HEAP);
    shmring_t *r = NULL;
    int rc = shmring_create(NULL, &cfg, &r);
    cr_assert_eq(rc, -ENOMEM, "ring of twice the physical memory: %s", shmring_strerror(rc));
}

/* ---- 7. Smaller ones ------------------------------------------------------ */

Test(hostile, group_writable_segment_refused_at_open)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    shmring_t *p = test_make("/gw", 16, 64, 0);
    shmring_close(p);
    cr_assert_eq(chmod(path_in(&d, "/gw"), 0620), 0);
    int rc = shmring_open("/gw", SHMRING_CONSUMER, &p);
    cr_assert_eq(rc, -EACCES, "group-writable: %s", shmring_strerror(rc));
    rc = shmring_open("/gw", SHMRING_CONSUMER | SHMRING_ALLOW_INSECURE, &p);
    cr_assert_eq(rc, 0, "insecure: %s", shmring_strerror(rc));
    shmring_close(p);
    shmring_info_t info;
    cr_assert_eq(shmring_inspect("/gw", &info), 0);
    cr_assert(info.health & SHMRING_HEALTH_WRITABLE);
    cr_assert_eq(info.mode, 0620);
    scratch_remove(&d);
}

Test(hostile, gc_of_another_users_dead_segment_skips_it, .timeout = 60)
{
    skip_on_heap();
    struct other_user u;
    user_make(&u);
    struct scratch d;
    scratch_make(&d, 0, 01777);
    /* Root's dead ring (made by a child that exited). */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Readable by others, so that their gc sees what it is. */
        shmring_config_t cfg = SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64,
                                                   .flags = SHMRING_OBSERVER, .mode = 0644);
        shmring_t *r = NULL;
        int ok = shmring_create("/roots", &cfg, &r) == 0;
        /* And one it may not read: what it is stays unknown to them. */
        cfg.mode = 0600;
        ok = ok && shmring_create("/private", &cfg, &r) == 0;
        _exit(ok ? 0 : 1);
    }
    cr_assert_eq(test_wait_child(pid), 0);
    static char out[4096];
    int st = run_tool(&u, out, sizeof out, "gc", NULL);
    cr_assert_eq(st, 0, "gc as another user: %d: %s", st, out);
    cr_assert_not_null(strstr(out, "skipped /roots"), "gc: %s", out);
    cr_assert_not_null(strstr(out, "uid 0"), "gc: %s", out);
    cr_assert_not_null(strstr(out, "skipped /private (this user may not read it"), "gc: %s", out);
    cr_assert_eq(access(path_in(&d, "/roots"), F_OK), 0);
    cr_assert_eq(access(path_in(&d, "/private"), F_OK), 0);
    scratch_remove(&d);
    user_remove(&u);
}

Test(hostile, open_fd_never_upgrades_a_read_only_descriptor)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    shmring_t *p = test_make("/ro", 16, 64, 0);
    int fd = open(path_in(&d, "/ro"), O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    shmring_t *c = NULL;
    int rc = shmring_open_fd(fd, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, -EACCES, "read-only descriptor: %s", shmring_strerror(rc));
    close(fd);
    /* Not a regular file: refused before anything is opened. */
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    rc = shmring_open_fd(pfd[0], SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, -EPROTO, "pipe: %s", shmring_strerror(rc));
    close(pfd[0]);
    close(pfd[1]);
    /* A read-write one works. */
    fd = open(path_in(&d, "/ro"), O_RDWR | O_CLOEXEC);
    rc = shmring_open_fd(fd, SHMRING_CONSUMER, &c);
    cr_assert_eq(rc, 0, "read-write descriptor: %s", shmring_strerror(rc));
    shmring_close(c);
    close(fd);
    shmring_close(p);
    scratch_remove(&d);
}

/* Every descriptor the library keeps open is close-on-exec. */
Test(hostile, library_descriptors_are_close_on_exec)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    shmring_t *p = test_make("/cx", 16, 64, 0);
    shmring_t *c = test_open_as("/cx", SHMRING_CONSUMER);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .flags = SHMRING_FORCE_MEMFD);
    shmring_t *m = NULL;
    cr_assert_eq(shmring_create("/cxm", &cfg, &m), 0);
    shmring_state_config_t scfg = SHMRING_STATE_CONFIG_INIT(.entries = 16, .value_size = 16);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create("/cxs", &scfg, &s), 0);
    int fds[] = {shmring_fd(p), shmring_fd(c), shmring_fd(m), shmring_state_fd(s)};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        int fl = fcntl(fds[i], F_GETFD);
        cr_assert_geq(fl, 0);
        cr_assert(fl & FD_CLOEXEC, "descriptor %d is inherited across exec", fds[i]);
    }
    shmring_state_close(s);
    shmring_close(m);
    shmring_close(c);
    shmring_close(p);
    scratch_remove(&d);
}

/* ---- The public helpers ---------------------------------------------------- */

Test(hostile, name_check_and_shm_dir)
{
    cr_assert_eq(shmring_name_check("/ok"), 0);
    cr_assert_eq(shmring_name_check(NULL), -EINVAL);
    cr_assert_eq(shmring_name_check("noslash"), -EINVAL);
    cr_assert_eq(shmring_name_check("/a/b"), -EINVAL);
    cr_assert_eq(shmring_name_check("/.."), -EINVAL);
    cr_assert_eq(shmring_name_check("/"), -EINVAL);
    cr_assert_eq(shmring_name_check("/tab\there"), -EINVAL);
    char longname[SHMRING_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(shmring_name_check(longname), -EINVAL);
    longname[SHMRING_NAME_MAX] = '\0';
    cr_assert_eq(shmring_name_check(longname), 0);
    struct scratch d;
    scratch_make(&d, 0, 0700);
    cr_assert_str_eq(shmring_shm_dir(), d.path);
    scratch_remove(&d);
    const char *old = getenv("SHMRING_SHM_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("SHMRING_SHM_DIR", "", 1);
    cr_assert_str_eq(shmring_shm_dir(), "/dev/shm");
    if (saved != NULL)
        setenv("SHMRING_SHM_DIR", saved, 1);
    else
        unsetenv("SHMRING_SHM_DIR");
    free(saved);
}

Test(hostile, inspect_describes_rings_and_tables)
{
    skip_on_heap();
    struct scratch d;
    scratch_make(&d, 0, 0700);
    shmring_config_t cfg =
        SHMRING_CONFIG_INIT(.slots = 16, .slot_size = 64, .flags = SHMRING_OVERWRITE);
    shmring_t *p = NULL;
    cr_assert_eq(shmring_create("/r", &cfg, &p), 0);
    shmring_t *c = test_open_as("/r", SHMRING_CONSUMER);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(shmring_push(p, "abc", 3), 0);
    shmring_info_t info;
    cr_assert_eq(shmring_inspect("/r", &info), 0);
    cr_assert_eq(info.kind, SHMRING_KIND_RING);
    cr_assert_eq(info.health, 0, "health %#x", info.health);
    cr_assert_eq(info.capacity, 16);
    cr_assert_eq(info.item_size, 64);
    cr_assert_eq(info.fill, 3);
    cr_assert_eq(info.flags & SHMRING_OVERWRITE, SHMRING_OVERWRITE);
    cr_assert_eq(info.uid, geteuid());
    cr_assert_eq(info.mode, 0600);
    cr_assert_eq(info.creator_pid, getpid());
    cr_assert(info.creator_alive);
    cr_assert_eq(info.producer_pid, getpid());
    cr_assert(info.producer_alive);
    cr_assert_eq(info.consumers, 1);
    cr_assert_eq(info.nparties, 2);
    cr_assert_eq(info.party[0].index, 0);
    cr_assert_eq(info.party[0].role, SHMRING_PRODUCER);
    cr_assert_eq(info.party[1].role, SHMRING_CONSUMER);
    cr_assert(info.party[1].alive);
    shmring_close(c);
    shmring_close(p);
    cr_assert_eq(shmring_inspect("/r", &info), 0);
    cr_assert(info.producer_closed);
    cr_assert_eq(info.nparties, 0);

    shmring_state_config_t scfg = SHMRING_STATE_CONFIG_INIT(.entries = 16, .value_size = 8);
    shmring_state_t *s = NULL;
    cr_assert_eq(shmring_state_create("/s", &scfg, &s), 0);
    cr_assert_eq(shmring_state_write(s, "a", "1", 1), 0);
    cr_assert_eq(shmring_state_write(s, "b", "2", 1), 0);
    cr_assert_eq(shmring_inspect("/s", &info), 0);
    cr_assert_eq(info.kind, SHMRING_KIND_STATE);
    cr_assert_eq(info.capacity, 16);
    cr_assert_eq(info.item_size, 8);
    cr_assert_eq(info.fill, 2);
    cr_assert_eq(info.users, 1);
    shmring_state_close(s);

    /* Bad input. */
    cr_assert_eq(shmring_inspect("/r", NULL), -EINVAL);
    cr_assert_eq(shmring_inspect("r", &info), -EINVAL);
    cr_assert_eq(shmring_inspect("/none", &info), -ENOENT);
    cr_assert_eq(symlink(path_in(&d, "/r"), path_in(&d, "/link")), 0);
    cr_assert_eq(shmring_inspect("/link", &info), -ELOOP);
    int fd = open(path_in(&d, "/junk"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_eq(write(fd, "junk", 4), 4);
    close(fd);
    cr_assert_eq(shmring_inspect("/junk", &info), -EPROTO);
    setenv("SHMRING_SHM_DIR", "/nonexistent-shmring-dir", 1);
    cr_assert_eq(shmring_inspect("/r", &info), -ENOENT);
    setenv("SHMRING_SHM_DIR", d.path, 1);
    scratch_remove(&d);
}
