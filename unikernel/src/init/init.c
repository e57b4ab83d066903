/*
 * init: PID 1 of a moat VM.
 *
 * Mounts devtmpfs, proc and sysfs; loads the kernel modules listed in /etc/moat/modules
 * (one "path parameters..." per line, dependencies first, as the image builder wrote them);
 * waits for the read-only disk and mounts it on /mnt: /dev/xvdd (squashfs) by default, or the
 * disk and filesystem the kernel command line names with moat.disk= and moat.fs= (a template root
 * image booted by PVH GRUB says /dev/xvda and ext4, whose driver mounts its ext2); runs node on
 * /mnt/app/main.js through the disk's own ld-linux and libraries; powers the VM off when node
 * exits. Every step says what failed on the console, because the console is all a VM has.
 *
 * Shutdown requests: the kernel itself takes dom0's `control/shutdown` (drivers/xen/manage.c
 * `shutdown_handler` reads and clears it), then for "poweroff"/"halt" runs the poweroff helper
 * (kernel/reboot.c `orderly_poweroff`, command from /proc/sys/kernel/poweroff_cmd) and for
 * "reboot" calls ctrl_alt_del(), which signals PID 1 with SIGINT once CAD is disabled. So init
 * names itself as the poweroff helper (`/init --request poweroff`: SIGTERM to PID 1), disables
 * CAD, and forwards either request to node as SIGTERM; node ends its work and exits, and init
 * then powers off, or reboots when the request was a reboot.
 *
 * Built static (gcc -static) so the initramfs needs no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DISK "/dev/xvdd"
#define DEFAULT_FS "squashfs"
#define CMDLINE_MAX_BYTES 4096
#define DISK_WAIT_MS 60000
#define MODULES_LIST "/etc/moat/modules"
#define LINE_MAX_BYTES 1024
#define POWEROFF_CMD "/proc/sys/kernel/poweroff_cmd"
#define POWEROFF_HELPER "/init --request poweroff"

/* Set by the signal handlers: 1 power off, 2 reboot (dom0 asked), forwarded to node. */
static volatile sig_atomic_t requested;
static volatile pid_t node_pid;

static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  /* One write per line so lines from node and from us do not interleave mid-line. */
  if (write(2, "moat-init: ", 11) < 0 || write(2, line, (size_t)n) < 0) return;
}

static void power_off(int status) {
  if (requested == 2) {
    say("reboot as dom0 asked (status %d)", status);
    sync();
    reboot(RB_AUTOBOOT);
  }
  say("power off (status %d)", status);
  sync();
  reboot(RB_POWER_OFF);
  /* reboot() only returns on failure; PID 1 must never exit (the kernel would panic). */
  for (;;) pause();
}

static void console_fds(void) {
  int fd = open("/dev/console", O_RDWR | O_NOCTTY);
  if (fd < 0) return;
  dup2(fd, 0);
  dup2(fd, 1);
  dup2(fd, 2);
  if (fd > 2) close(fd);
}

static int mount_or_say(const char *source, const char *target, const char *type, unsigned long flags) {
  mkdir(target, 0755);
  if (mount(source, target, type, flags, NULL) == 0) return 0;
  say("mount %s on %s (%s) failed: %s", source, target, type, strerror(errno));
  return -1;
}

/* Loads each module of the list; a module that is already loaded is fine. */
static int load_modules(void) {
  FILE *list = fopen(MODULES_LIST, "r");
  if (!list) {
    say("cannot open %s: %s", MODULES_LIST, strerror(errno));
    return -1;
  }
  char line[LINE_MAX_BYTES];
  int failures = 0;
  while (fgets(line, sizeof line, list)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == '\0' || line[0] == '#') continue;
    char *params = strchr(line, ' ');
    if (params) *params++ = '\0';
    else params = "";
    int fd = open(line, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      say("cannot open module %s: %s", line, strerror(errno));
      failures++;
      continue;
    }
    if (syscall(SYS_finit_module, fd, params, 0) != 0 && errno != EEXIST) {
      say("loading module %s (%s) failed: %s", line, params, strerror(errno));
      failures++;
    }
    close(fd);
  }
  fclose(list);
  return failures ? -1 : 0;
}

/*
 * node's environment: the fixed entries, then the image's own from /mnt/app/env (one NAME=value
 * a line; absent is fine), e.g. glibc's malloc tunables and NODE_OPTIONS for a VM sized to a few
 * tens of MiB. Lines that are not NAME=value, or too many, are refused with a message.
 */
#define APP_ENV "/mnt/app/env"
#define APP_ENV_MAX 8
static char app_env_lines[APP_ENV_MAX][LINE_MAX_BYTES];
static char *node_envp[4 + APP_ENV_MAX] = {"PATH=/mnt/bin", "HOME=/tmp", "TMPDIR=/tmp", NULL};

static void read_app_env(void) {
  FILE *f = fopen(APP_ENV, "r");
  if (!f) return;
  int n = 3;
  char line[LINE_MAX_BYTES];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == '\0' || line[0] == '#') continue;
    char *eq = strchr(line, '=');
    if (!eq || eq == line || strspn(line, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") != (size_t)(eq - line)) {
      say("%s: not NAME=value, ignored: %.60s", APP_ENV, line);
      continue;
    }
    if (n - 3 >= APP_ENV_MAX) {
      say("%s: more than %d entries, the rest ignored", APP_ENV, APP_ENV_MAX);
      break;
    }
    memcpy(app_env_lines[n - 3], line, strlen(line) + 1);
    node_envp[n] = app_env_lines[n - 3];
    n++;
    say("node environment: %s", line);
  }
  node_envp[n] = NULL;
  fclose(f);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * Copies the value of `key` (e.g. "moat.disk=") from the kernel command line into `out`, or
 * `fallback` when absent. Values are single words; a too long one is refused.
 */
static void cmdline_value(const char *key, const char *fallback, char *out, size_t size) {
  static char cmdline[CMDLINE_MAX_BYTES];
  snprintf(out, size, "%s", fallback);
  int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  if (n <= 0) return;
  cmdline[n] = '\0';
  size_t key_len = strlen(key);
  for (char *word = strtok(cmdline, " \n"); word; word = strtok(NULL, " \n")) {
    if (strncmp(word, key, key_len) != 0) continue;
    if (strlen(word + key_len) >= size) {
      say("%s%s is too long; using %s", key, word + key_len, fallback);
      return;
    }
    snprintf(out, size, "%s", word + key_len);
  }
}

/* blkfront probes the disk asynchronously after the module loads: wait for its node. */
static int wait_for_disk(const char *disk) {
  long deadline = now_ms() + DISK_WAIT_MS;
  struct stat st;
  while (stat(disk, &st) != 0) {
    if (now_ms() > deadline) {
      say("%s did not appear within %d ms (is the disk attached?)", disk, DISK_WAIT_MS);
      return -1;
    }
    usleep(20000);
  }
  return 0;
}

static void on_request(int signal) {
  requested = signal == SIGINT ? 2 : 1;
  if (node_pid > 0) kill(node_pid, SIGTERM);
}

/* Names us the kernel's poweroff helper and routes ctrl_alt_del() to us as SIGINT. */
static void take_shutdown_requests(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_request;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  if (reboot(RB_DISABLE_CAD) != 0) say("cannot disable ctrl-alt-del: %s", strerror(errno));
  int fd = open(POWEROFF_CMD, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, POWEROFF_HELPER, strlen(POWEROFF_HELPER)) < 0)
    say("cannot set %s: %s", POWEROFF_CMD, strerror(errno));
  if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
  if (getpid() != 1) {
    /* The kernel runs us as its poweroff helper: pass the request to PID 1. */
    if (argc == 3 && strcmp(argv[1], "--request") == 0 && strcmp(argv[2], "poweroff") == 0)
      return kill(1, SIGTERM) == 0 ? 0 : 1;
    say("must run as PID 1");
    return 1;
  }
  mount_or_say("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
  console_fds();
  mount_or_say("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_or_say("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_or_say("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV);
  take_shutdown_requests();
  if (load_modules() != 0) power_off(2);
  char disk[64];
  char fs[32];
  cmdline_value("moat.disk=", DEFAULT_DISK, disk, sizeof disk);
  cmdline_value("moat.fs=", DEFAULT_FS, fs, sizeof fs);
  if (wait_for_disk(disk) != 0) power_off(3);
  if (mount_or_say(disk, "/mnt", fs, MS_RDONLY | MS_NODEV | MS_NOSUID) != 0) power_off(4);

  read_app_env();
  long start = now_ms();
  pid_t node = fork();
  if (node < 0) {
    say("fork failed: %s", strerror(errno));
    power_off(5);
  }
  if (node == 0) {
    char *node_argv[] = {"/mnt/lib64/ld-linux-x86-64.so.2", "--library-path", "/mnt/lib", "/mnt/bin/node",
                         "/mnt/app/main.js", NULL};
    struct sigaction deflt;
    memset(&deflt, 0, sizeof deflt);
    deflt.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &deflt, NULL);
    sigaction(SIGINT, &deflt, NULL);
    execve(node_argv[0], node_argv, node_envp);
    say("exec %s failed: %s", node_argv[0], strerror(errno));
    _exit(127);
  }
  node_pid = node;
  say("node started (pid %d)", (int)node);
  /* A request that came while node was starting. */
  if (requested) kill(node, SIGTERM);
  /* PID 1 reaps every orphan; only node's own exit ends the VM. */
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) {
      say("waitpid failed: %s", strerror(errno));
      power_off(6);
    }
    if (pid != node) continue;
    if (requested) say("node ended after dom0's %s request", requested == 2 ? "reboot" : "poweroff");
    long ms = now_ms() - start;
    if (WIFEXITED(status)) {
      say("node exited with code %d after %ld ms", WEXITSTATUS(status), ms);
      power_off(WEXITSTATUS(status));
    }
    say("node killed by signal %d after %ld ms", WIFSIGNALED(status) ? WTERMSIG(status) : -1, ms);
    power_off(128);
  }
}
