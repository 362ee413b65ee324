#!/usr/bin/perl
# Measures how long a change written to Redis (and announced on sbx:events,
# as the daemon and the API do) takes to be seen through the gateway:
# a route moved to another pod, and a key revoked.  Prints two medians, ms.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha256_hex);

my %o = (rounds => 20);
GetOptions(\%o, 'gateway=s', 'redis=s', 'key=s', 'user=s', 'sandbox=s',
           'first=s', 'second=s', 'rounds=i') or die "usage\n";

my $redis = IO::Socket::IP->new(PeerAddr => $o{redis}) or die "redis: $!\n";

sub redis {
    my $cmd = '*' . @_ . "\r\n";
    $cmd .= '$' . length($_) . "\r\n$_\r\n" for @_;
    print $redis $cmd;
    my $line = <$redis>;
    die "redis: $line" if $line =~ /^-/;
    if ($line =~ /^\$(\d+)/) { read $redis, my $b, $1 + 2 }
}

sub get {
    my $s = IO::Socket::IP->new(PeerAddr => $o{gateway}) or die "gw: $!\n";
    print $s "GET /proxy/$o{sandbox}/v1/shell/exec HTTP/1.0\r\n"
           . "Authorization: Bearer $o{key}\r\n\r\n";
    local $/;
    return <$s> // '';
}

# returns ms until the gateway's answer matches $want
sub until_seen {
    my ($want) = @_;
    my $t0 = time;
    while (time - $t0 < 5) {
        return (time - $t0) * 1000 if get() =~ $want;
        sleep 0.0005;
    }
    die "change not seen within 5 s\n";
}

sub median { my @s = sort { $a <=> $b } @_; $s[int(@s / 2)] }

my $route = "sbx:route:$o{user}:$o{sandbox}";
my $hash = sha256_hex($o{key});
my (@route, @revoke);

get() for 1 .. 3;    # warm the cache

for (1 .. $o{rounds}) {
    redis('HSET', $route, 'addr', $o{second});
    redis('PUBLISH', 'sbx:events', "route $o{user} $o{sandbox}");
    push @route, until_seen(qr/^second/m);
    redis('HSET', $route, 'addr', $o{first});
    redis('PUBLISH', 'sbx:events', "route $o{user} $o{sandbox}");
    until_seen(qr/"success"/);

    redis('HSET', "sbx:key:$hash", 'active', '0');
    redis('PUBLISH', 'sbx:events', "key $hash");
    push @revoke, until_seen(qr/^HTTP\/1\.\d 401/);
    redis('HSET', "sbx:key:$hash", 'active', '1');
    redis('PUBLISH', 'sbx:events', "key $hash");
    until_seen(qr/^HTTP\/1\.\d 200/);
}

printf "%.2f %.2f\n", median(@route), median(@revoke);
