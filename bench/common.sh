# Shared by the bench scripts (sourced, after OUT is set): print a figure and
# append it to OUT, take the median of numbers on standard input, and pin a
# command to the last core (PIN) so that ours and a baseline see the same
# core one after the other.
emit() { echo "$1: $2"; echo "$1: $2" >> "$OUT"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
CPU=$(( $(nproc) - 1 ))
PIN="taskset -c $CPU"
command -v taskset >/dev/null 2>&1 || PIN=""
