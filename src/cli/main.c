/* `shmring`: entry point and the table of subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* Adding a subcommand is one line here (and its cli_command in cli.h). */
/* clang-format off */
static const struct cli_command *const commands[] = {
    &cli_cmd_ls,   &cli_cmd_stat, &cli_cmd_create, &cli_cmd_rm,  &cli_cmd_gc,
    &cli_cmd_send, &cli_cmd_recv, &cli_cmd_bench,  &cli_cmd_get, &cli_cmd_put,
    &cli_cmd_del,  &cli_cmd_dump, &cli_cmd_watch,
#ifdef SHMRING_HAVE_NATS /* `shmring bridge` needs libnats */
    &cli_cmd_bridge,
#endif
};
/* clang-format on */

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: shmring COMMAND [ARGS...]\n"
                 "       shmring COMMAND --help\n"
                 "       shmring --help | --version\n"
                 "\n"
                 "Inspect and use shmring rings and state tables in shared memory.\n"
                 "\n"
                 "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n"
                 "NAME is a segment name such as /feed (the leading '/' may be left out).\n"
                 "Segments live in $SHMRING_SHM_DIR, or /dev/shm.\n"
                 "Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

static const struct cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

/* `--help` anywhere before a `--` asks for the subcommand's help. */
static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

static int print_stdout(const char *text)
{
    if (fputs(text, stdout) == EOF || fflush(stdout) != 0)
        return CLI_FAIL;
    return CLI_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_USAGE;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        print_usage(stdout);
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
        printf("shmring %s\n", shmring_version());
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    }
    const struct cli_command *cmd = find_command(arg);
    if (cmd == NULL) {
        fprintf(stderr, "shmring: unknown command '%s'\nTry 'shmring --help'.\n", arg);
        return CLI_USAGE;
    }
    if (wants_help(argc - 1, argv + 1))
        return print_stdout(cmd->help);
    return cmd->run(argc - 1, argv + 1);
}
