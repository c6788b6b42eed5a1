#!/usr/bin/env bash
# The convergence property test with every sync completing (no killed site or
# hub): here every check is strict, including that each overwritten value is in
# the conflict log under the site that typed it.
E2E_CUTS=0 exec bash "$(dirname "$0")/17-convergence.t"
