#!/usr/bin/perl
# Readiness of a gateway pod, from GET /health (docs/api.md).  Only
# perl-base, which every Debian image has: IO::Socket and regular
# expressions on the module's flat answer.
#
# Before the pod has first been ready it must reach Redis ("database":
# "connected") and the route table must have been listed by sandbox-syncd
# ("sync": {"state": "synced" or "stale"}): a pod with a wrong Redis
# address, or started before any list, gets no traffic and a rollout
# stops there (maxUnavailable 0).  Once ready, a pod stays ready while it
# answers /health: Redis and sandbox-syncd are shared by every pod, so
# their outages would take all pods out of the Service at once, where
# nginx's cache and its 503s serve better; alert on "stale" instead.
# "First" is per nginx: a mark older than nginx's pid file was left by the
# container before a restart, and readiness starts over.
use strict;
use warnings;
use IO::Socket::INET;

my $port = $ENV{GATEWAY_HEALTH_PORT} || 8080;
my $mark = $ENV{GATEWAY_READY_MARK} || '/run/gateway-was-ready';
my $pidfile = $ENV{GATEWAY_PID_FILE} || '/run/nginx.pid';

sub fail { print STDERR "not ready: @_\n"; exit 1 }

# the whole check is bounded: a server that keeps the connection open
# must not hold the probe past its own deadline
$SIG{ALRM} = sub { fail('no answer within 5 s') };
alarm 5;

my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                              Timeout => 3)
    or fail("connect to port $port: $!");
print $s "GET /health HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $answer = do { local $/; <$s> } // '';
my ($status) = $answer =~ m{^HTTP/1\.[01] (\d{3})};
my (undef, $body) = split /\r\n\r\n/, $answer, 2;
fail('no answer') unless defined $status;
fail("GET /health: $status") unless $status eq '200';
sub marked {
    my @m = stat $mark or return 0;
    my @p = stat $pidfile or return 1;
    return $m[9] >= $p[9];
}
exit 0 if marked();

my ($db) = ($body // '') =~ /"database"\s*:\s*"([^"]*)"/;
my ($state) = ($body // '') =~ /"sync"\s*:\s*\{[^}]*"state"\s*:\s*"([^"]*)"/;
fail('Redis ' . ($db // 'unknown')) unless ($db // '') eq 'connected';
fail('sync state ' . ($state // 'missing'))
    unless ($state // '') =~ /^(?:synced|stale)$/;

open my $fh, '>', $mark or fail("$mark: $!");
close $fh;
exit 0;
