#!/usr/bin/env bash
# The convergence property test with every sync completing (no killed site or
# hub): tells a merge bug from a crash-recovery bug when 17-convergence.t fails
# (replay its seed here with E2E_SEED).
E2E_CUTS=0 exec bash "$(dirname "$0")/17-convergence.t"
