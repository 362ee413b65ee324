#!/usr/bin/perl
# A demo sandbox runtime: a test double of the AIO sandbox contract
# (docs: ../shared/notes/clients.md §2.1) for tests and the local demo.
#
#   sandbox-runtime.pl --listen 127.0.0.1:PORT [--id NAME] [--workdir DIR]
#
# POST /v1/shell/exec   {"command": "...", "exec_dir"?, "timeout"?}: runs
#                       it with /bin/sh -c, answers the AIO result shape;
#                       streams SSE when Accept has text/event-stream;
#                       {"argv": [...], "env"?} (sandbox-agent's form) runs
#                       the program directly, each element one argument,
#                       and answers stdout and stderr apart as well
# POST /v1/file/read, /v1/file/write, /v1/file/delete  {"file", "content"?,
#                       "encoding"? "utf-8"|"base64"}: sandbox-agent's
#                       file operations (absolute paths)
# GET  /v1/events       ?count=N&interval_ms=M: an SSE stream
# GET  /v1/shell/ws     WebSocket: {"type":"ready"}, then echoes input
# ANY  /_debug/...      reports the request as seen (headers, connection,
#                       the body, or past 64 KiB its length and SHA-256);
#                       with ?then=reset the next request on the connection
#                       is answered by a reset (a pod's keep-alive timeout
#                       racing a reuse)
# GET  /health          {"status":"ok"}
# POST|GET|DELETE /mcp  (and /v1/mcp) MCP Streamable HTTP, protocol
#                       2025-06-18 (clients.md §4.3): initialize gives an
#                       Mcp-Session-Id, notifications 202, tools/list,
#                       tools/call "run" {command} answered as SSE (with
#                       notifications/progress per output chunk when the
#                       call has a progressToken) or JSON; GET 405; DELETE
#                       ends the session, after which it is 404
#
# Every answer carries X-Runtime-Id, X-Runtime-Conn (this TCP connection)
# and X-Runtime-Conn-Requests (requests served on it so far).  One process
# per connection, HTTP/1.1 keep-alive; a request with Connection: close is
# answered with Connection: close, as HTTP/1.1 servers do, and then the
# connection is closed.

use strict;
use warnings;
use Getopt::Long;
use IO::Socket::IP;
use Socket qw(SOL_SOCKET SO_LINGER);
use IO::Select;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Digest::SHA qw(sha1_base64 sha256_hex);
use Time::HiRes qw(time sleep);

my ($listen, $id, $workdir, $verbose) = ('127.0.0.1:8080', 'runtime', '.', 0);
GetOptions('listen=s' => \$listen, 'id=s' => \$id, 'workdir=s' => \$workdir,
           'verbose' => \$verbose) or die "usage: $0 --listen ADDR:PORT\n";

my $json = JSON::PP->new->canonical->utf8;
my $server = IO::Socket::IP->new(LocalAddr => $listen, Listen => 128,
                                 ReuseAddr => 1)
    or die "listen $listen: $!\n";

$SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };
$SIG{TERM} = sub { kill 'TERM', -$$; exit 0 };
$SIG{PIPE} = 'IGNORE';
setpgrp(0, 0);

my $conns = 0;
while (1) {
    my $c = $server->accept or next;
    $conns++;
    my $pid = fork;
    if (!defined $pid) { close $c; next }
    if ($pid == 0) {
        close $server;
        $SIG{TERM} = 'DEFAULT';
        serve($c, "$$-$conns");
        exit 0;
    }
    close $c;
}

sub serve {
    my ($c, $conn) = @_;
    my $buf = '';
    my $served = 0;
    my $reset = 0;
    while (1) {
        my $req = read_request($c, \$buf) or return;
        if ($reset) {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $c;
            return;
        }
        $served++;
        # HTTP/1.0 closes unless it asks to keep the connection
        my $conn_h = $req->{headers}{connection} // '';
        my $keep = $req->{http10} ? $conn_h =~ /keep-alive/i
                                  : $conn_h !~ /close/i;
        handle($c, $req, { conn => $conn, requests => $served,
                           close => !$keep }) or return;
        return unless $keep;
        $reset = $req->{path} =~ m{^/_debug/}
                 && $req->{query} =~ /(?:^|&)then=reset(?:&|$)/;
    }
}

sub read_request {
    my ($c, $buf) = @_;
    while ($$buf !~ /\r\n\r\n/) {
        my $n = sysread $c, $$buf, 65536, length $$buf;
        return undef unless $n;
    }
    $$buf =~ s/^(.*?)\r\n\r\n//s;
    my ($line, @lines) = split /\r\n/, $1;
    my ($method, $target, $minor) = $line =~ m{^(\S+) (\S+) HTTP/1\.([01])$}
        or return undef;
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }
    my $body = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            while ($$buf !~ /\r\n/) {
                sysread($c, $$buf, 65536, length $$buf) or return undef;
            }
            $$buf =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n// or return undef;
            my $n = hex $1;
            while (length $$buf < $n + 2) {
                sysread($c, $$buf, 65536, length $$buf) or return undef;
            }
            $body .= substr($$buf, 0, $n);
            substr($$buf, 0, $n + 2) = '';
            last if $n == 0;
        }
    } elsif (my $len = $h{'content-length'}) {
        while (length $$buf < $len) {
            sysread($c, $$buf, 65536, length $$buf) or return undef;
        }
        $body = substr($$buf, 0, $len);
        substr($$buf, 0, $len) = '';
    }
    my ($path, $query) = split /\?/, $target, 2;
    return { method => $method, http10 => $minor eq "0", target => $target, path => $path,
             query => $query // '', headers => \%h, body => $body };
}

sub respond {
    my ($c, $st, $status, $type, $body, %extra) = @_;
    my %reason = (200 => 'OK', 202 => 'Accepted', 400 => 'Bad Request',
                  404 => 'Not Found', 406 => 'Not Acceptable',
                  405 => 'Method Not Allowed', 422 => 'Unprocessable Entity');
    my $h = "HTTP/1.1 $status " . ($reason{$status} // 'Status') . "\r\n"
          . "Content-Type: $type\r\nContent-Length: " . length($body) . "\r\n"
          . "X-Runtime-Id: $id\r\nX-Runtime-Conn: $st->{conn}\r\n"
          . "X-Runtime-Conn-Requests: $st->{requests}\r\n"
          . closing($st);
    $h .= "$_: $extra{$_}\r\n" for sort keys %extra;
    print {$c} "$h\r\n$body";
    return 1;
}

sub closing { $_[0]{close} ? "Connection: close\r\n" : '' }

sub sse_head {
    my ($c, $st) = @_;
    print {$c} "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        . "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
        . "X-Runtime-Id: $id\r\nX-Runtime-Conn: $st->{conn}\r\n"
        . closing($st) . "\r\n";
}

sub respond_json {
    my ($c, $st, $status, $data) = @_;
    return respond($c, $st, $status, 'application/json', $json->encode($data));
}

sub handle {
    my ($c, $r, $st) = @_;
    print STDERR "$r->{method} $r->{target}\n" if $verbose;

    if ($r->{path} =~ m{^/_debug/}) {
        # a large body is reported by its length and digest only
        my $big = length $r->{body} > 65536;
        return respond_json($c, $st, 200, {
            method => $r->{method}, path => $r->{path}, query => $r->{query},
            headers => $r->{headers}, body => $big ? undef : $r->{body},
            body_length => length $r->{body},
            body_sha256 => Digest::SHA::sha256_hex($r->{body}),
            conn => $st->{conn},
            conn_requests => $st->{requests}, runtime_id => $id });
    }
    return respond_json($c, $st, 200, { status => 'ok' })
        if $r->{path} eq '/health';
    return exec_command($c, $r, $st) if $r->{path} eq '/v1/shell/exec';
    return file_op($c, $r, $st, $1) if $r->{path} =~ m{^/v1/file/(read|write|delete)$};
    return events($c, $r, $st) if $r->{path} eq '/v1/events';
    return websocket($c, $r, $st) if $r->{path} eq '/v1/shell/ws';
    return mcp($c, $r, $st) if $r->{path} =~ m{^(?:/v1)?/mcp/?$};
    return respond_json($c, $st, 404, { detail => 'Not Found' });
}

sub exec_command {
    my ($c, $r, $st) = @_;
    return respond_json($c, $st, 405, { detail => 'Method Not Allowed' })
        unless $r->{method} eq 'POST';
    my $in = eval { $json->decode($r->{body}) };
    return exec_argv($c, $r, $st, $in)
        if ref $in eq 'HASH' && ref $in->{argv} eq 'ARRAY';
    if (ref $in ne 'HASH' || !defined $in->{command} || ref $in->{command}) {
        return respond_json($c, $st, 422, { detail => [ {
            loc => [ 'body', 'command' ], msg => 'Field required',
            type => 'missing' } ] });
    }
    my $dir = $in->{exec_dir} // $workdir;
    my $timeout = $in->{timeout} // 600;
    my $sse = ($r->{headers}{accept} // '') =~ m{text/event-stream};
    my $session = $in->{id} // sprintf('%08x', int rand 2**32);

    # the command's status is ours to collect, not the reaper's
    local $SIG{CHLD} = 'DEFAULT';

    pipe(my $rd, my $wr) or die;
    my $pid = fork // die;
    if ($pid == 0) {
        close $rd;
        open STDOUT, '>&', $wr;
        open STDERR, '>&', $wr;
        chdir $dir;
        setpgrp(0, 0);
        exec '/bin/sh', '-c', $in->{command};
        exit 127;
    }
    close $wr;

    if ($sse) {
        sse_head($c, $st);
    }

    my $out = '';
    my $sel = IO::Select->new($rd);
    my $until = time + $timeout;
    my $status = 'completed';
    while (1) {
        if (time > $until) { kill 'KILL', -$pid; $status = 'hard_timeout'; last }
        next unless $sel->can_read(0.1);
        my $n = sysread $rd, my $chunk, 65536;
        last unless $n;
        $out .= $chunk;
        chunk($c, "event: output\ndata: " . $json->encode({ output => $chunk })
                  . "\n\n") if $sse;
    }
    waitpid $pid, 0;
    my $code = $status eq 'completed' ? $? >> 8 : undef;
    my $result = { success => JSON::PP::true, message => 'Operation successful',
                   data => { session_id => $session, command => $in->{command},
                             status => $status, output => $out,
                             console => [ { ps1 => "$id \$", command => $in->{command},
                                            output => $out } ],
                             exit_code => $code } };
    if ($sse) {
        chunk($c, "event: result\ndata: " . $json->encode($result) . "\n\n");
        chunk($c, '');
        return 1;
    }
    return respond_json($c, $st, 200, $result);
}

# the argv form: no shell between the request and the program
sub exec_argv {
    my ($c, $r, $st, $in) = @_;
    my @argv = @{ $in->{argv} };
    return respond_json($c, $st, 422, { detail => [ {
        loc => [ 'body', 'argv' ], msg => 'List should have at least 1 item',
        type => 'too_short' } ] }) unless @argv && !grep { ref } @argv;
    my $dir = $in->{exec_dir} // $workdir;
    my %env = %{ ref $in->{env} eq 'HASH' ? $in->{env} : {} };
    local $SIG{CHLD} = 'DEFAULT';
    pipe(my $ord, my $owr) or die;
    pipe(my $erd, my $ewr) or die;
    my $pid = fork // die;
    if ($pid == 0) {
        close $ord; close $erd;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $owr;
        open STDERR, '>&', $ewr;
        chdir $dir;
        setpgrp(0, 0);
        utf8::encode($_) for @argv, values %env;
        $ENV{$_} = $env{$_} for keys %env;
        { no warnings 'exec'; exec { $argv[0] } @argv; }
        print STDERR "$argv[0]: $!\n";
        POSIX::_exit(127);
    }
    close $owr; close $ewr;
    my %out = ($ord => '', $erd => '');
    my $sel = IO::Select->new($ord, $erd);
    my $until = time + ($in->{timeout} // 600);
    my $status = 'completed';
    while ($sel->count) {
        if (time > $until) { kill 'KILL', -$pid; $status = 'hard_timeout'; last }
        for my $fh ($sel->can_read(0.1)) {
            my $n = sysread $fh, my $chunk, 65536;
            if ($n) { $out{$fh} .= $chunk } else { $sel->remove($fh) }
        }
    }
    waitpid $pid, 0;
    my ($o, $e) = ($out{$ord}, $out{$erd});
    utf8::decode($o); utf8::decode($e);
    return respond_json($c, $st, 200, { success => JSON::PP::true,
        message => 'Operation successful',
        data => { status => $status, argv => \@argv, output => $o . $e,
                  stdout => $o, stderr => $e,
                  exit_code => $status eq 'completed' ? $? >> 8 : undef } });
}

# sandbox-agent's file operations
sub file_op {
    my ($c, $r, $st, $op) = @_;
    my $in = eval { $json->decode($r->{body}) };
    my $f = ref $in eq 'HASH' ? $in->{file} : undef;
    return respond_json($c, $st, 422, { detail => 'file: Field required' })
        unless defined $f && !ref $f && $f =~ m{^/};
    my $b64 = ($in->{encoding} // 'utf-8') eq 'base64';
    if ($op eq 'read') {
        open my $fh, '<:raw', $f or return respond_json($c, $st, 404,
            { success => JSON::PP::false, message => "File not found: $f" });
        my $data = do { local $/; <$fh> } // '';
        my $content = $data;
        if ($b64) { require MIME::Base64; $content = MIME::Base64::encode_base64($data, '') }
        else { utf8::decode($content) }
        return respond_json($c, $st, 200, { success => JSON::PP::true,
            data => { file => $f, content => $content,
                      encoding => $b64 ? 'base64' : 'utf-8',
                      size => length $data } });
    }
    if ($op eq 'write') {
        my $data = $in->{content} // '';
        if ($b64) { require MIME::Base64; $data = MIME::Base64::decode_base64($data) }
        else { utf8::encode($data) }
        open my $fh, '>:raw', $f or return respond_json($c, $st, 403,
            { success => JSON::PP::false, message => "$f: $!" });
        print $fh $data;
        close $fh;
        return respond_json($c, $st, 200, { success => JSON::PP::true,
            data => { file => $f, bytes_written => length $data } });
    }
    return respond_json($c, $st, 404,
        { success => JSON::PP::false, message => "File not found: $f" })
        unless -f $f;
    unlink $f;
    return respond_json($c, $st, 200, { success => JSON::PP::true,
                                        data => { file => $f } });
}

sub chunk {
    my ($c, $data) = @_;
    printf {$c} "%x\r\n%s\r\n", length $data, $data;
}

sub events {
    my ($c, $r, $st) = @_;
    my %q = map { split /=/, $_, 2 } grep { /=/ } split /&/, $r->{query};
    my $count = $q{count} // 3;
    my $interval = ($q{interval_ms} // 200) / 1000;
    sse_head($c, $st);
    for my $i (1 .. $count) {
        sleep $interval if $i > 1;
        chunk($c, "event: message\ndata: " . $json->encode({ n => $i, t => time })
                  . "\n\n") or return 0;
    }
    chunk($c, '');
    return 1;
}

sub websocket {
    my ($c, $r, $st) = @_;
    my $key = $r->{headers}{'sec-websocket-key'};
    return respond_json($c, $st, 400, { detail => 'not a WebSocket request' })
        unless $key && ($r->{headers}{upgrade} // '') =~ /websocket/i;
    my $accept = sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
    print {$c} "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Accept: $accept\r\n"
        . "X-Runtime-Id: $id\r\n\r\n";
    ws_send($c, 1, '{"type":"ready"}');
    while (1) {
        my ($op, $data) = ws_read($c);
        return 0 unless defined $op;
        if ($op == 8) { ws_send($c, 8, ''); return 0 }
        if ($op == 9) { ws_send($c, 10, $data); next }
        next unless $op == 1;
        my $m = eval { $json->decode($data) };
        ws_send($c, 1, ref $m eq 'HASH' && ($m->{type} // '') eq 'input'
                       ? $json->encode({ type => 'output', data => $m->{data} })
                       : $data);
    }
}

sub ws_read {
    my ($c) = @_;
    my $read = sub {
        my ($n, $b) = (shift, '');
        while (length $b < $n) {
            return undef unless sysread $c, $b, $n - length $b, length $b;
        }
        return $b;
    };
    my $h = $read->(2) // return;
    my $op = ord(substr $h, 0) & 0x0f;
    my $len = ord(substr $h, 1) & 0x7f;
    my $masked = ord(substr $h, 1) & 0x80;
    $len = unpack 'n', ($read->(2) // return) if $len == 126;
    $len = unpack 'Q>', ($read->(8) // return) if $len == 127;
    my $mask = $masked ? ($read->(4) // return) : "\0\0\0\0";
    my $data = $len ? ($read->($len) // return) : '';
    $data ^= substr($mask x (int($len / 4) + 1), 0, $len);
    return ($op, $data);
}

sub ws_send {
    my ($c, $op, $data) = @_;
    my $len = length $data;
    my $f = chr(0x80 | $op);
    $f .= $len < 126 ? chr($len) : $len < 65536 ? chr(126) . pack('n', $len)
                                                 : chr(127) . pack('Q>', $len);
    print {$c} $f . $data;
}

### MCP Streamable HTTP

# sessions outlive a connection (one process per connection): files
sub mcp_session_file {
    my ($sid) = @_;
    return undef unless defined $sid && $sid =~ /^[0-9a-f]{32}$/;
    mkdir "$workdir/.mcp";
    return "$workdir/.mcp/$sid";
}

sub mcp_error {
    my ($c, $st, $status, $id, $code, $message) = @_;
    return respond_json($c, $st, $status, { jsonrpc => '2.0', id => $id,
        error => { code => $code, message => $message } });
}

sub mcp {
    my ($c, $r, $st) = @_;
    my $sid = $r->{headers}{'mcp-session-id'};
    my $file = mcp_session_file($sid);

    if ($r->{method} eq 'GET') {        # no server-initiated stream here
        return respond($c, $st, 405, 'application/json',
                       '{"error":"no GET stream"}', Allow => 'POST, DELETE');
    }
    if ($r->{method} eq 'DELETE') {
        return mcp_error($c, $st, 400, undef, -32000, 'Mcp-Session-Id required')
            unless defined $sid;
        return mcp_error($c, $st, 404, undef, -32001, 'Session not found')
            unless $file && -e $file;
        unlink $file;
        return respond($c, $st, 200, 'application/json', '{}');
    }
    return mcp_error($c, $st, 405, undef, -32000, 'Method not allowed')
        unless $r->{method} eq 'POST';

    my $accept = $r->{headers}{accept} // '';
    return mcp_error($c, $st, 406, undef, -32000,
                     'Accept must list application/json and text/event-stream')
        unless $accept =~ m{application/json} && $accept =~ m{text/event-stream};
    my $msg = eval { $json->decode($r->{body}) };
    return mcp_error($c, $st, 400, undef, -32700, 'Parse error')
        unless ref $msg eq 'HASH' && ($msg->{jsonrpc} // '') eq '2.0';
    my ($rid, $method) = ($msg->{id}, $msg->{method} // '');

    if ($method eq 'initialize') {
        my $new = sprintf '%08x' x 4, map { int rand 2**32 } 1 .. 4;
        open my $f, '>', mcp_session_file($new) or die;
        close $f;
        my $version = $msg->{params}{protocolVersion} // '2025-06-18';
        return respond($c, $st, 200, 'application/json', $json->encode({
            jsonrpc => '2.0', id => $rid, result => {
                protocolVersion => $version,
                capabilities => { tools => { listChanged => JSON::PP::false } },
                serverInfo => { name => "sandbox-runtime $id", version => '1.0.0' } } }),
            'Mcp-Session-Id' => $new);
    }
    return mcp_error($c, $st, 400, $rid, -32000, 'Mcp-Session-Id required')
        unless defined $sid;
    return mcp_error($c, $st, 404, $rid, -32001, 'Session not found')
        unless $file && -e $file;
    return respond($c, $st, 202, 'application/json', '')
        unless defined $rid;             # a notification or a response

    if ($method eq 'tools/list') {
        return respond_json($c, $st, 200, { jsonrpc => '2.0', id => $rid,
            result => { tools => [ {
                name => 'run', description => 'Runs a shell command',
                inputSchema => { type => 'object',
                                 properties => { command => { type => 'string' } },
                                 required => [ 'command' ] } } ] } });
    }
    if ($method eq 'tools/call') {
        return mcp_error($c, $st, 200, $rid, -32602, 'Unknown tool')
            unless ($msg->{params}{name} // '') eq 'run'
                   && defined $msg->{params}{arguments}{command};
        return mcp_run($c, $st, $rid, $msg->{params});
    }
    if ($method eq 'ping') {
        return respond_json($c, $st, 200, { jsonrpc => '2.0', id => $rid,
                                            result => {} });
    }
    return mcp_error($c, $st, 200, $rid, -32601, "Method not found: $method");
}

# tools/call run: the command's output chunks as progress, then the result,
# on an SSE stream that ends with the response
sub mcp_run {
    my ($c, $st, $id, $params) = @_;
    my $token = $params->{_meta}{progressToken};
    local $SIG{CHLD} = 'DEFAULT';
    pipe(my $rd, my $wr) or die;
    my $pid = fork // die;
    if ($pid == 0) {
        close $rd;
        open STDOUT, '>&', $wr;
        open STDERR, '>&', $wr;
        chdir $workdir;
        exec '/bin/sh', '-c', $params->{arguments}{command};
        exit 127;
    }
    close $wr;
    sse_head($c, $st);
    my ($out, $n) = ('', 0);
    while (1) {
        my $got = sysread $rd, my $chunk, 65536;
        last unless $got;
        $out .= $chunk;
        next unless defined $token;
        chunk($c, "event: message\ndata: " . $json->encode({
            jsonrpc => '2.0', method => 'notifications/progress',
            params => { progressToken => $token, progress => ++$n,
                        message => $chunk } }) . "\n\n");
    }
    waitpid $pid, 0;
    my $code = $? >> 8;
    chunk($c, "event: message\ndata: " . $json->encode({
        jsonrpc => '2.0', id => $id, result => {
            content => [ { type => 'text', text => $out } ],
            isError => $code ? JSON::PP::true : JSON::PP::false } }) . "\n\n");
    chunk($c, '');
    return 1;
}
