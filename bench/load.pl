#!/usr/bin/perl
# Prints Redis protocol for `redis-cli --pipe`: N users, each with one key
# (sk_live_ + i zero-padded to 32 digits, as bench/run.sh's wrk script makes
# them) and one ready route "sb" to --addr.
use strict;
use warnings;
use Getopt::Long;
use Digest::SHA qw(sha256_hex);

my ($count, $addr) = (100000, '127.0.0.1:8080');
GetOptions('count=i' => \$count, 'addr=s' => \$addr) or die "usage\n";

sub resp { my $s = '*' . @_ . "\r\n"; $s .= '$' . length($_) . "\r\n$_\r\n" for @_; $s }

binmode STDOUT;
for my $i (0 .. $count - 1) {
    my $key = sprintf 'sk_live_%032d', $i;
    print resp('HSET', "sbx:user:u$i", 'username', "u$i", 'active', '1');
    print resp('HSET', 'sbx:key:' . sha256_hex($key), 'user', "u$i",
               'id', "k$i", 'expires_at', '0', 'active', '1');
    print resp('HSET', "sbx:route:u$i:sb", 'addr', $addr, 'ready', '1',
               'suspended', '0', 'rv', '1');
}
