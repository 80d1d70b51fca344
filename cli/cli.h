/* cli: the `percept` command. Each subcommand lives in its own file and
 * registers itself with CLI_COMMAND; main.c dispatches git-style
 * (`percept <command> [args]`, `percept model <sub>` for two-word ones). */
#ifndef PERCEPT_CLI_H
#define PERCEPT_CLI_H

#include <stdio.h>

/* Exit codes shared by all commands. */
enum { CLI_OK = 0, CLI_MATCH = 1, CLI_ERROR = 2 };

typedef int (*cli_fn)(int argc, char **argv); /* argv[0] is the command name */

typedef struct cli_command {
    const char *name;      /* "embed", "model info", ... */
    const char *summary;   /* one line for `percept help` */
    cli_fn fn;
} cli_command;

void cli_register(const cli_command *c);

#define CLI_COMMAND(ident, name_, summary_, fn_)                            \
    static const cli_command cli_cmd_##ident = {name_, summary_, fn_};      \
    __attribute__((constructor)) static void cli_reg_##ident(void) {        \
        cli_register(&cli_cmd_##ident);                                     \
    }

/* Prints "percept <cmd>: <perr_msg() or perr_str(rc)>" to stderr and returns
 * CLI_ERROR. */
int cli_fail(const char *cmd, int rc);

/* Model file: flag, else $PERCEPT_MODEL, else the default model installed
 * under $PERCEPT_HOME (percept model fetch). Caller frees *out. */
int cli_find_model(const char *flag, char **out);
/* Vocabulary: flag, else $PERCEPT_VOCAB, else bpe_simple_vocab_16e6.txt.gz
 * next to the model file, else in $PERCEPT_HOME. Caller frees *out. */
int cli_find_vocab(const char *flag, const char *model_path, char **out);
/* $PERCEPT_HOME or ~/.local/share/percept; static storage. */
const char *cli_home(void);

/* Prints a float array as a JSON array with enough digits to round-trip. */
void cli_print_floats(FILE *f, const float *v, int n);

#endif
