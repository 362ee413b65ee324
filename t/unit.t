#!/usr/bin/perl
# Builds and runs the C unit tests of the pure parsers (src/sandbox_*.c)
# under AddressSanitizer and UBSan where the compiler can, forwarding
# their TAP lines as tests of this script.

use strict;
use warnings;
use FindBin;
use File::Temp qw(tempdir);
use Test::More;

my $root = "$FindBin::Bin/..";
my $dir = tempdir(CLEANUP => 1);
my $cc = $ENV{CC} // 'cc';

my @san = ('-fsanitize=address,undefined', '-fno-sanitize-recover=all');
system("echo 'int main(void){return 0;}' | $cc -x c @san -o $dir/probe - 2>/dev/null") == 0
    or @san = ();

my %tests = (
    test_path  => [ 'src/sandbox_path.c', 't/unit/path_cases.txt' ],
    test_token => [ 'src/sandbox_token.c' ],
);

for my $name (sort keys %tests) {
    my ($src, @args) = @{ $tests{$name} };
    my $bin = "$dir/$name";
    my $out = `$cc -std=c99 -O1 -g -Wall -Wextra -Werror @san -I$root/src -I$root/t/unit -o $bin $root/t/unit/$name.c $root/$src 2>&1`;
    ok($? == 0, "$name builds" . (@san ? ' with sanitizers' : '')) or diag($out);
    next if $?;

    my @lines = `$bin @{[ map { "$root/$_" } @args ]} 2>&1`;
    my $status = $?;
    my $n = 0;
    for (@lines) {
        chomp;
        if (/^(not )?ok \d+ - (.*)$/) {
            ok(!$1, "$name: $2");
            $n++;
        } elsif (!/^1\.\.\d+$/) {
            diag("$name: $_");
        }
    }
    ok($n > 0, "$name ran its cases ($n)");
    is($status, 0, "$name exits cleanly");
}

done_testing;
