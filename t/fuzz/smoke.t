#!/usr/bin/perl
# The fuzz targets (t/fuzz/run.sh) built with libFuzzer, ASan and UBSan
# and run over their seeds and 2,000 mutations each: every property they
# assert holds for the unit tests' cases and realistic messages.  The long
# runs are `make fuzz` (docs/fuzzing.md), kept out of the suite.

use strict;
use warnings;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/../..";
my $dir = tempdir(CLEANUP => 1);
my $cc = $ENV{CLANG} // 'clang';

# clang and its libFuzzer runtime (scripts/install-deps.sh installs both)
open(my $fh, '>', "$dir/probe.c") or die "$dir/probe.c: $!";
print $fh "#include <stddef.h>\n#include <stdint.h>\n"
    . "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
    . " { (void) d; (void) n; return 0; }\n";
close($fh);
if (system("$cc -fsanitize=fuzzer -o $dir/probe $dir/probe.c "
           . ">/dev/null 2>&1") != 0)
{
    plan skip_all => "$cc cannot build libFuzzer targets";
}

my $out = `SBX_FUZZ_OUT=$dir/out sh $root/t/fuzz/run.sh --smoke 2>&1`;
my $rc = $? >> 8;

is($rc, 0, 'run.sh --smoke exits 0') or diag($out);

for my $t (qw(path body event reply agentkernel)) {
    my ($n) = $out =~ /^$t: stat::number_of_executed_units: (\d+)$/m;
    ok(defined $n && $n >= 2000, "$t: ran its seeds and mutations ("
       . ($n // 'none') . ' executions)');
    ok(!glob("$dir/out/$t-crash-*") && !glob("$dir/out/$t-oom-*")
       && !glob("$dir/out/$t-leak-*"), "$t: no crash, leak or OOM saved");
}

done_testing();
