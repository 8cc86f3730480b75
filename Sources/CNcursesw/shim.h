#ifndef SNAPVOL_NCURSES_SHIM_H
#define SNAPVOL_NCURSES_SHIM_H

/* Wide-character ncurses: the define must come before the include (pkg-config flags are dropped
   for system-library targets), and the library is libncursesw. */
#define NCURSES_WIDECHAR 1
#include <ncursesw/curses.h>
#include <ncursesw/term.h>
#include <locale.h>
#include <langinfo.h>

/* Swift cannot import function-like macros or (under strict concurrency) mutable C globals:
   each one it needs is wrapped here. */
static inline WINDOW *snapvol_stdscr(void) { return stdscr; }
static inline int snapvol_lines(void) { return LINES; }
static inline int snapvol_cols(void) { return COLS; }
static inline int snapvol_colors(void) { return COLORS; }
static inline attr_t snapvol_color_pair(int pair) { return (attr_t)COLOR_PAIR(pair); }
static inline attr_t snapvol_a_bold(void) { return A_BOLD; }
static inline attr_t snapvol_a_reverse(void) { return A_REVERSE; }
static inline attr_t snapvol_a_dim(void) { return A_DIM; }
static inline attr_t snapvol_a_underline(void) { return A_UNDERLINE; }
static inline int snapvol_key_f(int n) { return KEY_F(n); }

/* Checks that the terminal type is known without letting initscr() exit the process. */
static inline int snapvol_terminal_usable(void) {
    int error = 0;
    if (setupterm(NULL, 1, &error) != OK) return 0;
    return 1;
}

static inline const char *snapvol_codeset(void) { return nl_langinfo(CODESET); }

#endif
