#!/usr/bin/perl
# Builds and runs the C unit tests of the pure parsers: each
# t/unit/test_<x>.c with src/sandbox_<x>.c (and what %needs lists for it;
# test_syncd_<x>.c with the daemon's src/syncd/<x>.c and its libraries),
# and t/unit/<x>_cases.txt as its argument when there is one.
# AddressSanitizer and UBSan are used when the compiler (CC, default cc)
# can build and run with them.  Every TAP line of a test program becomes a
# test of this script; a program that fails to build, dies, exits non-zero
# or does not run its whole plan fails too.

use strict;
use warnings;
use File::Basename qw(basename);
use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = File::Spec->rel2abs("$FindBin::Bin/..");
my $dir = tempdir(CLEANUP => 1);
my @cc = split ' ', ($ENV{CC} // 'cc');
my @flags = ('-std=c99', '-O1', '-g', '-Wall', '-Wextra', '-Werror',
             "-I$root/src", "-I$root/t/unit");

# runs a command, returns its exit status and its output, stderr included
sub run {
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT) or die "dup: $!";
        exec(@cmd) or die "exec $cmd[0]: $!";
    }
    local $/;
    my $out = <$fh> // '';
    close($fh);
    return ($?, $out);
}

# the sanitizers, if they link and run here (not in every container)
my @san = ('-fsanitize=address,undefined', '-fno-sanitize-recover=all');
{
    open(my $fh, '>', "$dir/probe.c") or die "$dir/probe.c: $!";
    print $fh "int main(void) { return 0; }\n";
    close($fh);
    my ($st) = run(@cc, @san, '-o', "$dir/probe", "$dir/probe.c");
    ($st) = run("$dir/probe") if $st == 0;
    if ($st != 0) {
        diag('sanitizers unavailable, building without them');
        @san = ();
    }
}

# the other pure sources and the libraries a module parser is built with
my %needs = (
    body  => [ [ "$root/src/sandbox_path.c" ], [ '-ljansson' ] ],
    reply => [ [ "$root/src/sandbox_limit.c" ], [ '-lhiredis', '-ljansson' ] ],
    limit => [ [], [ '-ljansson' ] ],
    event => [ [ "$root/src/sandbox_path.c" ], [] ],
    agentkernel => [ [ "$root/src/sandbox_agentkernel_runtime.c",
                       "$root/src/sandbox_path.c" ], [ '-ljansson' ] ],
);

my @tests = sort glob("$root/t/unit/test_*.c");
ok(@tests > 0, 'unit tests found') or BAIL_OUT('no t/unit/test_*.c');

for my $test (@tests) {
    my ($name) = basename($test) =~ /^test_(\w+)\.c$/ or next;
    my $src = "$root/src/sandbox_$name.c";
    my $cases = "$root/t/unit/${name}_cases.txt";
    my $bin = "$dir/test_$name";
    my (@more, @libs);

    if ($needs{$name}) {
        @more = @{ $needs{$name}[0] };
        @libs = @{ $needs{$name}[1] };
    }

    if ($name =~ /^syncd_(\w+)$/) {
        $src = "$root/src/syncd/$1.c";
        @more = ('-std=gnu99', "-I$root/src/syncd");
        @libs = ('-ljansson', '-lyaml', '-lcrypto');
    }

    my ($st, $out) = run(@cc, @flags, @more, @san, '-o', $bin, $test,
                         -f $src ? $src : (), @libs);
    ok($st == 0, "test_$name builds" . (@san ? ' with sanitizers' : ''))
        or diag($out);
    next if $st != 0;

    ($st, $out) = run($bin, -f $cases ? $cases : ());

    my ($n, $plan) = (0, undef);
    for my $line (split /\n/, $out) {
        if ($line =~ /^(not )?ok (\d+)(?: - (.*))?$/) {
            $n++;
            ok(!$1, "test_$name $2: " . ($3 // ''));
        } elsif ($line =~ /^1\.\.(\d+)$/) {
            $plan = $1;
        } elsif ($line ne '') {
            diag("test_$name: $line");
        }
    }

    ok($n > 0 && defined $plan && $plan == $n,
       "test_$name ran its plan ($n of " . ($plan // '?') . ')');
    is($st, 0, "test_$name exits cleanly");
}

done_testing;
