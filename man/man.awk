# man.awk — the text parts of the man pages (man/gen.sh, docs/cli.md "Man pages").
# POSIX awk (Debian's mawk). One program, several modes (-v mode=...):
#
#   verb      stdin, a --help text: troff lines to print between .nf and .fi
#   cmds      stdin, a --help text: the command words it lists after -v path="latchkey devices"
#             (lines "  WORD ...", "  [--db FILE] WORD ...", "usage: PATH [WORD] ...", "PATH A|B ...",
#             and 'PATH WORD --help' anywhere)
#   name      a man/*.txt file: its first line, the page's NAME one-liner, escaped
#   has       a man/*.txt file: "yes" if it holds section -v sect="TITLE"
#   sections  a man/*.txt file: its section titles, one a line
#   section   a man/*.txt file: section -v sect="TITLE" as troff
#   table     a markdown file: the rows of the table under -v heading="## TITLE" as .TP items
#
# man/*.txt: line 1 the one-liner; then sections, each headed by a line in
# capitals (DESCRIPTION, FILES, ...). In a section: a blank line ends a
# paragraph; "* TAG" starts a tagged item (its body the lines after it);
# lines indented 4 spaces are shown as they are; `code` is set in bold.

# Text made safe for troff: a backslash is \e, every hyphen the ASCII minus
# (options are copied from man pages), and a line that starts with a control
# character (. or ') starts with \& instead.
function esc(s) {
    gsub(/\\/, "\\e", s)
    gsub(/-/, "\\-", s)
    return s
}
function lead(s) {
    if (s ~ /^[.']/)
        s = "\\&" s
    return s
}
# Prose: escaped, `code` in bold (an unpaired ` stays as it is).
function prose(s,    n, i, parts, r) {
    s = esc(s)
    n = split(s, parts, "`")
    if (n % 2 == 0)
        return lead(s)
    r = parts[1]
    for (i = 2; i <= n; i++)
        r = r ((i % 2 == 0) ? "\\fB" : "\\fR") parts[i]
    return lead(r)
}
function flush_verb() {
    if (inverb) {
        print ".fi"
        print ".RE"
        inverb = 0
    }
}
# Words a command list names: "a|b|c" -> a, b, c (each a lowercase word).
function words(tok,    n, i, w) {
    sub(/[]].*$/, "", tok)
    n = split(tok, w, "|")
    for (i = 1; i <= n; i++)
        if (w[i] ~ /^[a-z][a-z0-9-]*$/ && !(w[i] in seen)) {
            seen[w[i]] = 1
            print w[i]
        }
}

mode == "verb" { print lead(esc($0)); next }

mode == "cmds" {
    line = $0
    # a pointer to a subcommand's help: 'PATH WORD --help'
    rest = line
    while ((i = index(rest, "'" path " ")) > 0) {
        rest = substr(rest, i + length(path) + 2)
        split(rest, t, " ")
        words(t[1])
    }
    gsub(/\[--db FILE\] /, "", line)
    if (line ~ /^  [a-z]/) {
        split(substr(line, 3), t, " ")
        words(t[1])
        next
    }
    sub(/^usage: /, "", line)
    sub(/^ +/, "", line)
    if (index(line, path " ") == 1) {
        rest = substr(line, length(path) + 2)
        sub(/^\[/, "", rest)
        split(rest, t, " ")
        words(t[1])
    }
    next
}

mode == "name" { if (NR == 1) print prose($0); exit }
mode == "sections" && NR > 1 && /^[A-Z][A-Z ]*$/ { print; next }
mode == "has" && NR > 1 && $0 == sect { print "yes"; exit }

mode == "section" && NR > 1 {
    if (/^[A-Z][A-Z ]*$/) {
        flush_verb()
        on = ($0 == sect)
        started = 0
        gap = 0
        next
    }
    if (!on)
        next
    if ($0 ~ /^[ \t]*$/) {
        flush_verb()
        gap = 1
        next
    }
    if (substr($0, 1, 4) == "    ") {
        if (!inverb) {
            if (started)
                print ".PP"
            print ".RS 4"
            print ".nf"
            inverb = 1
        }
        print lead(esc(substr($0, 5)))
        started = 1
        gap = 0
        next
    }
    flush_verb()
    if (substr($0, 1, 2) == "* ") {
        print ".TP"
        print prose(substr($0, 3))
    } else {
        if (gap && started)
            print ".PP"
        print prose($0)
    }
    started = 1
    gap = 0
    next
}

# A markdown table of the section headed -v heading= (docs/cli.md's "## Exit
# codes", docs/daemon.md's "## Configuration"): a .TP item per row, the first
# cell its tag; a middle cell (a default) is added to the last.
mode == "table" {
    if (/^## /) {
        on = ($0 == heading)
        body = 0
        next
    }
    if (!on || !/^\|/) {
        body = 0
        next
    }
    if (/^\|---/) {
        body = 1
        next
    }
    if (!body)
        next
    row = $0
    gsub(/\\\|/, "\001", row)
    n = split(row, c, "|")
    for (i = 2; i < n; i++) {
        gsub(/^ +| +$/, "", c[i])
        gsub(/\001/, "|", c[i])
    }
    print ".TP"
    print prose(c[2])
    text = c[n - 1]
    d = c[3]
    sub(/^— ?/, "", d)
    if (n == 5 && d ~ /^\(/)
        text = text " " d
    else if (n == 5 && d != "")
        text = text " (default: " d ")"
    print prose(text)
    next
}

END { if (mode == "section") flush_verb() }
