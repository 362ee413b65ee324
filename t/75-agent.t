#!/usr/bin/perl
# sandbox-agent, the real static binary, on loopback: the AIO exec contract
# (shell form) and its argv form (literal arguments), SSE streaming, files
# in utf-8 and base64, every bad input, timeouts killing the process group,
# bounded output, concurrency, no zombies or leaked descriptors, the
# wrapped entrypoint, and the gateway (nginx with the module) routing
# /<user>/<sandbox>/v1/... to it.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use JSON::PP;
use Encode ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use SbxTest;

my $t = SbxTest->new;
my $dir = $t->dir;
my $bin = $ENV{SBX_AGENT} // $t->root . '/build/sandbox-agent';
my $J = JSON::PP->new->utf8->canonical;
$SIG{PIPE} = 'IGNORE';      # the agent may answer 413 before the body is sent

plan skip_all => "no $bin (make agent)" unless -x $bin;

my $static = `ldd $bin 2>&1` =~ /not a dynamic executable/;
ok($static, 'ldd: not a dynamic executable');

mkdir "$dir/work";
mkdir "$dir/files";

sub start_agent {
    my ($name, @opts) = @_;
    my $port = $t->port($name);
    my $pid = $t->spawn($name, {}, $bin, '--listen', "127.0.0.1:$port",
                        @opts);
    $t->wait_port($port) or die "sandbox-agent $name did not start:\n"
                                . $t->read_file("$name.out");
    return $pid;
}

my $agent = start_agent('agent', '--workdir', "$dir/work",
                        '--timeout-max', 3, '--max-output', 4096,
                        '--max-body', 65536, '--max-file', 100000,
                        '--max-conns', 8);

sub post {
    my ($path, $body, %o) = @_;
    $body = $J->encode($body) if ref $body;
    my $res = $t->http('POST', $path, port => $o{port} // 'agent',
                       headers => { 'Content-Type' => 'application/json',
                                    %{ $o{headers} || {} } },
                       body => $body);
    $res->{json} = eval { decode_json($res->{body}) };
    return $res;
}

sub exec_ok {
    my ($req, $name, %o) = @_;
    my $res = post('/v1/shell/exec', $req, %o);
    is($res->{status}, 200, "$name: 200");
    ok($res->{json} && $res->{json}{success}, "$name: success")
        or diag($res->{raw});
    return $res->{json} ? $res->{json}{data} : {};
}

# children of a process: [pid, state]
sub children_of {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $f, '<', $stat or next;
        my $line = <$f> // next;
        my ($state, $pp) = $line =~ /\)\s+(\S)\s+(\d+)/ or next;
        push @kids, [ $stat =~ m{/proc/(\d+)/}, $state ] if $pp == $ppid;
    }
    return @kids;
}

sub comm_of {
    open my $f, '<', "/proc/$_[0]/comm" or return '';
    chomp(my $c = <$f> // '');
    return $c;
}

# the agent's spare handler: forked ahead, it takes the next connection,
# and the next spare is forked once that connection's first answer is out
sub spare_of {
    my @s = grep { comm_of($_->[0]) eq 'agent-spare' } children_of($_[0]);
    return @s == 1 ? $s[0][0] : undef;
}

sub fds_of { my @f = glob "/proc/$_[0]/fd/*"; scalar @f }

sub wait_until {
    my ($cond, $timeout) = @_;
    my $until = time + ($timeout // 5);
    while (time < $until) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

my $fds_before = fds_of($agent);

### the spare handler

{
    # (the harness's probe of the port was a connection too: its spare
    # has served it and been replaced)
    my $first;
    ok(wait_until(sub { $first = spare_of($agent) }, 3),
       'a handler is forked ahead of the next connection');
    my $s = $t->_connect('agent');
    ok(wait_until(sub { comm_of($first) eq 'agent-handler' }, 3),
       'the spare takes the connection');
    ok(!spare_of($agent), 'no next spare before its first answer');
    is($t->http('GET', '/health', port => 'agent')->{status}, 200,
       'another connection meanwhile: served');
    my $sent = time;
    print $s "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        sysread($s, $head, 4096, length $head) or last;
    }
    like($head, qr{^HTTP/1\.1 200 }, 'it answers');
    # looked for every millisecond: without the delay it is there within
    # one or two
    my ($next, $seen);
    for (1 .. 3000) {
        $next = spare_of($agent);
        last if $next && $next != $first;
        sleep 0.001;
    }
    $seen = time - $sent;
    ok($next && $next != $first, 'then the next spare is forked');
    cmp_ok($seen, '>=', 0.020,
           'not before 20 ms after the answer (it would compete with it)');
    close $s;
}

# the main process killed without a word (SIGKILL): its spare goes too,
# and the port is free again
{
    my $p = $t->port('killed');
    my $pid = start_agent('killed', '--workdir', "$dir/work");
    my $sp;
    ok(wait_until(sub { $sp = spare_of($pid) }, 3), 'an agent and its spare');
    kill 'KILL', $pid;
    waitpid $pid, 0;
    delete $t->{pids}{killed};
    # gone, or a zombie of init's
    ok(wait_until(sub { my $st = do { open my $f, '<', "/proc/$sp/stat"
                                          or return 1; <$f> // '' };
                        $st eq '' || $st =~ /\)\s+Z/ }, 3),
       'SIGKILL of the main process: the spare ends with it');
    ok(IO::Socket::IP->new(LocalAddr => '127.0.0.1', LocalPort => $p,
                           Listen => 1, ReuseAddr => 1),
       'and the port is free');
}

### health

{
    my $res = $t->http('GET', '/health', port => 'agent');
    is($res->{status}, 200, 'health: 200');
    is(eval { decode_json($res->{body})->{status} }, 'ok', 'health: ok');
}

### argv form: every element reaches the program literally

my @tricky = ("it's", 'say "hi"', "a b  c", "line1\nline2", "tab\there",
              "\$(touch $dir/pwned1)", "`touch $dir/pwned2`",
              "; touch $dir/pwned3", "| cat", '$HOME', '*', '\\', '',
              "héllo wörld ✓ 日本", "--", "-n");
{
    my $d = exec_ok({ argv => [ $^X, '-e', 'print join "\0", @ARGV',
                                @tricky ] }, 'argv form');
    my @got = split /\0/, $d->{output} // '', -1;
    is_deeply(\@got, \@tricky, 'each argv element arrived as sent');
    is($d->{exit_code}, 0, 'argv form: exit code');
    is($d->{status}, 'completed', 'argv form: status');
    is_deeply($d->{argv}, [ $^X, '-e', 'print join "\0", @ARGV', @tricky ],
              'argv echoed back');
    ok(!-e "$dir/pwned1" && !-e "$dir/pwned2" && !-e "$dir/pwned3",
       'no $(), backtick or ; was run by a shell');

    $d = exec_ok({ argv => [ 'printf', '%s|', 'a b', "\$(echo no)" ] },
                 'argv through PATH');
    is($d->{output}, 'a b|$(echo no)|', 'printf got its arguments verbatim');

    $d = exec_ok({ argv => [ '/nonexistent/prog', 'x' ] }, 'argv: missing program');
    is($d->{exit_code}, 127, 'missing program: 127');
    like($d->{stderr}, qr{/nonexistent/prog: No such file}, 'and why');
}

### shell form: /bin/sh -c, as AIO runs it

{
    my $d = exec_ok({ command => 'echo $((6*7)); echo oops >&2; exit 3' },
                    'shell form');
    is($d->{output}, "42\noops\n", 'shell form: combined output');
    is($d->{stdout}, "42\n", 'stdout apart');
    is($d->{stderr}, "oops\n", 'stderr apart');
    is($d->{exit_code}, 3, 'non-zero exit code, still success');
    is($d->{command}, 'echo $((6*7)); echo oops >&2; exit 3', 'command echoed');
    is($d->{console}[0]{output}, "42\noops\n", 'console entry');
    ok(length $d->{session_id}, 'a session id');

    $d = exec_ok({ command => 'pwd' }, 'default directory');
    is($d->{output}, "$dir/work\n", 'runs in --workdir');
    $d = exec_ok({ command => 'pwd', exec_dir => "$dir/files", id => 's1' },
                 'exec_dir');
    is($d->{output}, "$dir/files\n", 'runs in exec_dir');
    is($d->{session_id}, 's1', 'id kept as session_id');

    $d = exec_ok({ command => 'printf "%s" "$GREETING"',
                   env => { GREETING => 'hé "there"' } }, 'env');
    is($d->{output}, 'hé "there"', 'env reaches the command');

    $d = exec_ok({ command => "printf 'caf\\303'; sleep 0.2; printf '\\251\\n'; "
                              . "printf '\\377\\n'" }, 'bytes');
    is($d->{output}, "café\n\x{fffd}\n", 'invalid UTF-8 shown as U+FFFD');

    $d = exec_ok({ argv => [ 'ls', '/proc/self/fd' ] }, 'fds of a command');
    my @fds = sort { $a <=> $b } split /\s+/, $d->{output};
    ok(@fds && $fds[-1] <= 3, "a command inherits only stdin/out/err (@fds)");
}

### SSE: chunks as they come, then the result


{
    my ($head, @ev) = $t->sse_post('/v1/shell/exec',
        { command => 'echo one; sleep 0.6; echo two >&2; sleep 0.6; '
                     . "printf '\\303'; sleep 0.3; printf '\\251\\n'" },
        port => 'agent');
    like($head, qr{^HTTP/1\.1 200 .*content-type: text/event-stream}is,
         'SSE: event stream');
    my @out = grep { $_->{event} eq 'output' } @ev;
    is_deeply([ map { [ $_->{data}{stream}, $_->{data}{output} ] } @out ],
              [ [ stdout => "one\n" ], [ stderr => "two\n" ],
                [ stdout => "é\n" ] ],
              'output events: stream and text, a cut character kept whole');
    ok(@out == 3 && $out[0]{at} < 0.5, 'first chunk before the command ends');
    ok(@out == 3 && $out[2]{at} - $out[0]{at} > 1.2, 'chunks spread in time');
    is($ev[-1]{event}, 'result', 'last event: result');
    is($ev[-1]{data}{data}{exit_code}, 0, 'result: exit code');
    is($ev[-1]{data}{data}{output}, "one\ntwo\né\n", 'result: whole output');
}

### files

{
    my $text = "héllo\n✓ wörld\nthird line\n";
    my $res = post('/v1/file/write', { file => "$dir/files/a/b/t.txt",
                                       content => $text });
    is($res->{status}, 200, 'write utf-8: 200');
    is($res->{json}{data}{bytes_written}, length(Encode::encode_utf8($text)),
       'bytes_written');
    ok(-f "$dir/files/a/b/t.txt", 'parent directories made');

    $res = post('/v1/file/read', { file => "$dir/files/a/b/t.txt" });
    is($res->{status}, 200, 'read utf-8: 200');
    is($res->{json}{data}{content}, $text, 'utf-8 round trip');
    is($res->{json}{data}{encoding}, 'utf-8', 'encoding named');

    $res = post('/v1/file/read', { file => "$dir/files/a/b/t.txt",
                                   start_line => 1, end_line => 2 });
    is($res->{json}{data}{content}, "✓ wörld\n", 'start_line/end_line');

    post('/v1/file/write', { file => "$dir/files/a/b/t.txt", content => 'end',
                             append => JSON::PP::true,
                             trailing_newline => JSON::PP::true });
    $res = post('/v1/file/read', { file => "$dir/files/a/b/t.txt",
                                   start_line => 3 });
    is($res->{json}{data}{content}, "end\n", 'append, trailing_newline');

    my $bytes = join '', map { chr } 0 .. 255;
    $res = post('/v1/file/write', { file => "$dir/files/bin",
                                    content => encode_base64($bytes, ''),
                                    encoding => 'base64' });
    is($res->{json}{data}{bytes_written}, 256, 'write base64: 256 bytes');
    open my $f, '<:raw', "$dir/files/bin";
    is(do { local $/; <$f> }, $bytes, 'the file holds the exact bytes');
    $res = post('/v1/file/read', { file => "$dir/files/bin",
                                   encoding => 'base64' });
    is(decode_base64($res->{json}{data}{content} // ''), $bytes,
       'base64 round trip');
    is($res->{json}{data}{size}, 256, 'size');

    $res = post('/v1/file/read', { file => "$dir/files/bin" });
    is($res->{status}, 400, 'binary read as utf-8: 400');
    like($res->{json}{message}, qr/not valid UTF-8.*base64/, 'with a hint');

    $res = post('/v1/file/delete', { file => "$dir/files/bin" });
    is($res->{status}, 200, 'delete: 200');
    ok(!-e "$dir/files/bin", 'deleted');
    $res = post('/v1/file/delete', { file => "$dir/files/bin" });
    is($res->{status}, 404, 'delete again: 404');
    $res = post('/v1/file/read', { file => "$dir/files/nope" });
    is($res->{status}, 404, 'read missing: 404');
    like($res->{json}{message}, qr/File not found/, 'missing: message');
    is(post('/v1/file/read', { file => "$dir/files" })->{status}, 400,
       'read a directory: 400');
    is(post('/v1/file/delete', { file => "$dir/files/a" })->{status}, 400,
       'delete a directory: 400');

    open $f, '>', "$dir/files/big";
    print $f 'x' x 100001;
    close $f;
    $res = post('/v1/file/read', { file => "$dir/files/big" });
    is($res->{status}, 400, 'file over --max-file: 400');
    like($res->{json}{message}, qr/limit of 100000/, 'names the limit');
}

### bad inputs: clear JSON errors

sub bad {
    my ($path, $body, $status, $re, $name, %o) = @_;
    my $res = ref $body eq 'CODE' ? $body->() : post($path, $body, %o);
    is($res->{status}, $status, "$name: $status");
    my $j = eval { decode_json($res->{body}) };
    ok($j && defined $j->{message} && $j->{message} =~ $re,
       "$name: JSON message") or diag($res->{raw});
    ok($j && JSON::PP::is_bool($j->{success}) && !$j->{success},
       "$name: success false");
    return $j;
}

{
    my $j = bad('/v1/shell/exec', {}, 422, qr/command: Field required/,
                'missing command');
    is_deeply($j->{detail}, [ { loc => [ 'body', 'command' ],
                                msg => 'Field required', type => 'missing' } ],
              'missing command: the AIO (FastAPI) detail');
    bad('/v1/shell/exec', '{"command": "echo', 422, qr/invalid JSON/,
        'invalid JSON');
    bad('/v1/shell/exec', '', 422, qr/invalid JSON/, 'empty body');
    bad('/v1/shell/exec', '["echo"]', 422, qr/JSON object/, 'array body');
    bad('/v1/shell/exec', '{"command":"a","command":"b"}', 422,
        qr/duplicate/, 'duplicate key');
    bad('/v1/shell/exec', { command => 42 }, 422, qr/command: .*string/,
        'command a number');
    bad('/v1/shell/exec', { command => [ 'ls' ] }, 422, qr/argv/,
        'command an array');
    bad('/v1/shell/exec', { command => '' }, 422, qr/non-empty/,
        'command empty');
    bad('/v1/shell/exec', { argv => [] }, 422, qr/argv: .*non-empty/,
        'argv empty');
    bad('/v1/shell/exec', { argv => 'ls' }, 422, qr/argv/, 'argv a string');
    bad('/v1/shell/exec', { argv => [ 'ls', 3 ] }, 422, qr/argv/,
        'argv with a number');
    bad('/v1/shell/exec', { argv => [ "l\0s" ] }, 422, qr/NUL/,
        'argv with a NUL byte');
    bad('/v1/shell/exec', { argv => ['ls'], command => 'ls' }, 422,
        qr/not both/, 'command and argv');
    bad('/v1/shell/exec', { command => 'ls', timeout => -1 }, 422,
        qr/timeout/, 'negative timeout');
    bad('/v1/shell/exec', { command => 'ls', timeout => '5' }, 422,
        qr/timeout/, 'timeout a string');
    bad('/v1/shell/exec', { command => 'ls', env => { A => 1 } }, 422,
        qr/env/, 'env value a number');
    bad('/v1/shell/exec', { command => 'ls', async_mode => JSON::PP::true },
        422, qr/async_mode/, 'async_mode');
    bad('/v1/shell/exec', { command => 'ls', exec_dir => "$dir/nope" }, 400,
        qr/exec_dir .*No such file/, 'exec_dir missing');
    bad('/v1/file/write', { file => 'rel/path', content => 'x' }, 422,
        qr/absolute/, 'relative path');
    bad('/v1/file/write', { file => "$dir/x" }, 422,
        qr/content: Field required/, 'write without content');
    bad('/v1/file/write', { file => "$dir/x", content => 'a=b=',
                            encoding => 'base64' }, 422, qr/base64/,
        'invalid base64');
    bad('/v1/file/write', { file => "$dir/x", content => 'x',
                            encoding => 'latin1' }, 422, qr/encoding/,
        'unknown encoding');
    bad('/v1/file/read', { file => "$dir/x", start_line => 'a' }, 422,
        qr/start_line/, 'start_line a string');
    bad('/v1/file/delete', { file => 7 }, 422, qr/file: .*string/,
        'file a number');
    bad('/v1/nothing', {}, 404, qr/Not Found/, 'unknown path');
    bad('/v1/shell/exec', sub { $t->http('GET', '/v1/shell/exec',
                                         port => 'agent') },
        405, qr/POST/, 'GET on exec');

    my $huge = '{"command":"' . ('x' x 70000) . '"}';
    $j = bad('/v1/shell/exec', $huge, 413, qr/limit of 65536 bytes/,
             'body over --max-body');
    bad('/v1/shell/exec', sub {
            _parse_raw($t->http_raw("POST /v1/shell/exec HTTP/1.1\r\n"
                . "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                . join('', map { sprintf("%x\r\n%s\r\n", 8192, 'x' x 8192) }
                           1 .. 9) . "0\r\n\r\n", port => 'agent')) },
        413, qr/limit of 65536/, 'chunked body over --max-body');
    bad('/v1/shell/exec', sub {
            _parse_raw($t->http_raw("BROKEN\r\n\r\n", port => 'agent')) },
        400, qr/malformed/, 'malformed request line');
    bad('/v1/shell/exec', sub {
            _parse_raw($t->http_raw("POST /v1/shell/exec HTTP/1.1\r\n"
                . "Host: x\r\nContent-Length: 5\r\n"
                . "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                port => 'agent')) },
        400, qr/malformed/, 'Content-Length with chunked');
    bad('/v1/shell/exec', sub {
            _parse_raw($t->http_raw("GET /health HTTP/1.1\r\nHost: x\r\n"
                . "X-Big: " . ('y' x 20000) . "\r\n\r\n", port => 'agent')) },
        431, qr/larger than 16384/, 'header over 16 KiB');

    # a chunked body within bounds is read
    my $res = _parse_raw($t->http_raw("POST /v1/shell/exec HTTP/1.1\r\n"
        . "Host: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        . "5\r\n{\"com\r\n10\r\nmand\":\"echo ok\"}\r\n0\r\n\r\n",
        port => 'agent'));
    is(eval { decode_json($res->{body})->{data}{output} }, "ok\n",
       'chunked body decoded');
}

sub _parse_raw { SbxTest::_parse($_[0]) }

### timeouts: the whole process group is killed

{
    my $t0 = time;
    my $d = exec_ok({ command => "sleep 300 & echo \$!; sleep 300",
                      timeout => 1 }, 'never-ending command');
    my $took = time - $t0;
    is($d->{status}, 'hard_timeout', 'status hard_timeout');
    ok(!defined $d->{exit_code}, 'no exit code');
    ok($took >= 0.9 && $took < 2.5, sprintf('killed at its timeout (%.2f s)',
                                            $took));
    my ($bg) = ($d->{output} // '') =~ /(\d+)/;
    ok($bg && wait_until(sub { !-e "/proc/$bg" }, 3),
       'its background child killed too (and reaped)');

    $t0 = time;
    $d = exec_ok({ command => 'sleep 300', timeout => 1e9 }, 'huge timeout');
    $took = time - $t0;
    is($d->{timeout}, 3, 'clamped to --timeout-max');
    ok($took >= 2.9 && $took < 4.5, sprintf('killed at the maximum (%.2f s)',
                                            $took));

    $d = exec_ok({ command => 'echo fine' }, 'default timeout');
    is($d->{timeout}, 3, 'default is min(--timeout, --timeout-max)');

    # exited, but a background child keeps the pipe: answered anyway
    $t0 = time;
    $d = exec_ok({ command => 'sleep 5 & echo started', timeout => 3 },
                 'background holder');
    ok(time - $t0 < 1.5, 'the answer does not wait for a background child');
    is($d->{exit_code}, 0, 'exit code of the shell');
}

### output bounded, truncation flagged

{
    my $d = exec_ok({ command => 'head -c 100000 /dev/zero | tr "\\0" a; '
                                 . 'echo done >&2' }, 'big output');
    is(length $d->{stdout}, 4096, 'stdout kept to --max-output');
    ok($d->{truncated}, 'truncated flagged');
    is($d->{exit_code}, 0, 'the command was drained, not blocked');
    like($d->{stderr}, qr/done/, 'stderr still read');

    $d = exec_ok({ command => 'echo small' }, 'small output');
    ok(JSON::PP::is_bool($d->{truncated}) && !$d->{truncated},
       'not truncated');
}

### keep-alive and pipelining

{
    my $body = '{"command":"echo k"}';
    my $one = "POST /v1/shell/exec HTTP/1.1\r\nHost: x\r\n"
            . "Content-Length: " . length($body) . "\r\n";
    my $raw = $t->http_raw("$one\r\n$body$one" . "Connection: close\r\n\r\n"
                           . $body, port => 'agent', timeout => 5);
    my @answers = $raw =~ m{(HTTP/1\.1 200 OK)}g;
    is(scalar @answers, 2, 'two pipelined requests, two answers');
}

### concurrency: several commands at once

{
    my @socks;
    my $t0 = time;
    for my $i (1 .. 5) {
        my $s = $t->_connect('agent');
        my $body = $J->encode({ command => "sleep 1; echo n$i" });
        print $s "POST /v1/shell/exec HTTP/1.1\r\nHost: x\r\n"
                 . "Connection: close\r\nContent-Length: "
                 . length($body) . "\r\n\r\n$body";
        push @socks, $s;
    }
    my @outs;
    for my $s (@socks) {
        local $/;
        my $raw = <$s>;
        my $res = SbxTest::_parse($raw // '');
        push @outs, eval { decode_json($res->{body})->{data}{output} };
    }
    my $took = time - $t0;
    is_deeply(\@outs, [ map { "n$_\n" } 1 .. 5 ], 'five answers, each its own');
    ok($took < 3, sprintf('five 1 s commands at once took %.2f s', $took));
}

### a client that goes away: its command is killed

{
    my ($head, @ev) = $t->sse_post('/v1/shell/exec',
                                   { command => 'echo $$; exec sleep 300' },
                                   port => 'agent',
                                   stop => sub { $_[0]{event} eq 'output' });
    my ($pid) = ($ev[0] && $ev[0]{data}{output} // '') =~ /(\d+)/;
    ok($pid && -e "/proc/$pid", 'the command runs');
    ok($pid && wait_until(sub { !-e "/proc/$pid" }, 3),
       'killed once the client disconnected');
}

### too many connections: 503 JSON, then served again

{
    my @idle = map { $t->_connect('agent') } 1 .. 8;
    wait_until(sub { children_of($agent) >= 8 }, 3);
    my $res = $t->http('GET', '/health', port => 'agent');
    is($res->{status}, 503, 'connection over --max-conns: 503');
    like($res->{body}, qr/too many connections/, 'with a JSON message');
    close $_ for @idle;
    ok(wait_until(sub {
           $t->http('GET', '/health', port => 'agent')->{status} == 200 }, 3),
       'served again once they closed');
}

### no zombies, no leaked descriptors

{
    # what is left is the one handler forked ahead, waiting in accept()
    ok(wait_until(sub { my @k = children_of($agent);
                        @k == 1 && comm_of($k[0][0]) eq 'agent-spare' }, 5),
       'every handler and command reaped: only the spare handler is left')
        or diag(explain([ map { [ @$_, comm_of($_->[0]) ] }
                              children_of($agent) ]));
    is(fds_of($agent), $fds_before, 'the agent holds no more fds than at start');
}

### AIO's optional key (SANDBOX_API_KEY)

{
    my $p = $t->port('keyed');
    $t->spawn('keyed', { SANDBOX_API_KEY => 's3cret' }, $bin, '--listen',
              "127.0.0.1:$p");
    ok($t->wait_port($p), 'keyed agent listening');
    my $cmd = { command => 'echo ${SANDBOX_API_KEY-unset}' };
    is(post('/v1/shell/exec', $cmd, port => 'keyed')->{status}, 401,
       'no key: 401');
    is(post('/v1/shell/exec', $cmd, port => 'keyed',
            headers => { 'X-AIO-API-Key' => 's3cre' })->{status}, 401,
       'a wrong key: 401');
    is(post('/v1/shell/exec', $cmd, port => 'keyed',
            headers => { Authorization => 'Bearer s3cret!' })->{status}, 401,
       'a longer key: 401');
    my $res = post('/v1/shell/exec', $cmd, port => 'keyed',
                   headers => { 'X-AIO-API-Key' => 's3cret' });
    is($res->{status}, 200, 'X-AIO-API-Key: 200');
    is($res->{json}{data}{output}, "unset\n", 'commands do not see the key');
    is(post('/v1/file/read', { file => '/nonexistent' }, port => 'keyed',
            headers => { Authorization => 'Bearer s3cret' })->{status}, 404,
       'Bearer: passes');
    is($t->http('GET', '/health', port => 'keyed')->{status}, 200,
       'health needs no key');
    $t->reap('keyed');
}

### the wrapped entrypoint

{
    my $p = $t->port('wrapped');
    my $pid = $t->spawn('wrapped', {}, $bin, '--listen', "127.0.0.1:$p", '--',
                        'sh', '-c', "echo started > $dir/wrapped; exec sleep 300");
    ok($t->wait_port($p), 'wrapped: listening');
    ok(wait_until(sub { -s "$dir/wrapped" }, 3), 'wrapped: the command runs');
    my $res = post('/v1/shell/exec', { argv => [ 'echo', 'beside it' ] },
                   port => 'wrapped');
    is($res->{json}{data}{output}, "beside it\n", 'wrapped: exec served');
    kill 'TERM', $pid;
    my $st = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 5) ? $? : -1;
    delete $t->{pids}{wrapped};
    is($st >> 8, 143, 'SIGTERM forwarded; the agent exits as its command did');

    $p = $t->port('wrapped2');
    $pid = $t->spawn('wrapped2', {}, $bin, '--listen', "127.0.0.1:$p", '--',
                     'sh', '-c', 'sleep 0.5; exit 7');
    $st = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 5) ? $? : -1;
    delete $t->{pids}{wrapped2};
    is($st >> 8, 7, 'the command\'s exit code is the agent\'s');
}

### a root file system with no libc and no shell: the agent alone

SKIP: {
    skip 'needs root and a static agent', 9 unless $static && $> == 0;
    my $root = "$dir/root";
    mkdir $_ for $root, "$root/dev", "$root/tmp";
    system('mknod', "$root/dev/null", 'c', 1, 3) == 0
        or skip 'cannot make /dev/null', 9;
    chmod 0666, "$root/dev/null";

    is(system($bin, '--install', "$root/sandbox-agent"), 0, '--install');
    is(`cmp $bin $root/sandbox-agent && echo same`, "same\n",
       'the copy is the binary');

    my $p = $t->port('chroot');
    my ($chroot) = grep { -x } '/usr/sbin/chroot', '/usr/bin/chroot';
    $t->spawn('chroot', { PATH => '/' }, $chroot, $root, '/sandbox-agent',
              '--listen', "127.0.0.1:$p", '--workdir', '/tmp');
    ok($t->wait_port($p), 'runs in a root holding nothing but itself')
        or diag($t->read_file('chroot.out'));
    my $res = post('/v1/shell/exec', { argv => [ 'sandbox-agent', '--version' ] },
                   port => 'chroot');
    is($res->{json}{data}{output}, "sandbox-agent 1.0\n",
       'argv form there: no shell needed');
    $res = post('/v1/shell/exec', { command => 'echo hi' }, port => 'chroot');
    is($res->{json}{data}{exit_code}, 127, 'shell form there: 127');
    like($res->{json}{data}{stderr}, qr{/bin/sh: No such file},
         'and the reason');
    post('/v1/file/write', { file => '/tmp/f', content => 'ü' },
         port => 'chroot');
    $res = post('/v1/file/read', { file => '/tmp/f' }, port => 'chroot');
    is($res->{json}{data}{content}, 'ü', 'files there');
    ok(-f "$root/tmp/f", 'written inside the root');
    is(post('/v1/file/delete', { file => '/tmp/f' }, port => 'chroot')
       ->{status}, 200, 'deleted there');
    $t->reap('chroot');
}

### through the gateway: /<user>/<sandbox>/v1/... reaches the agent

{
    start_agent('gw_agent', '--workdir', "$dir/work");
    $t->redis_start;
    $t->write_conf($t->base_conf(http => <<'EOF'));
    sandbox_redis %%REDIS%%;

    upstream sandbox_pods {
        sandbox_balancer;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;

        error_page 400 401 403 404 405 413 500 502 503 504 /_sandbox_error;
        location = /_sandbox_error { internal; sandbox_error; }

        location / {
            sandbox_route on;
            proxy_pass http://sandbox_pods$sandbox_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 30s;
        }
    }
EOF
    $t->add_user('alice');
    my $key = $t->add_key('alice');
    $t->add_route('alice', 'box', addr => '127.0.0.1:' . $t->port('gw_agent'));
    $t->nginx_start;
    my %auth = (Authorization => "Bearer $key");

    for my $i (1 .. 3) {
        my $res = post('/alice/box/v1/shell/exec',
                       { argv => [ $^X, '-e', 'print join "\0", @ARGV',
                                   @tricky ] },
                       port => 1, headers => \%auth);
        is($res->{status}, 200, "gateway exec $i: 200");
        is_deeply([ split /\0/, $res->{json}{data}{output} // '', -1 ],
                  \@tricky, "gateway exec $i: argv literal through the gateway");
    }

    my $res = post('/proxy/box/v1/shell/exec', { command => 'echo $((2+2))' },
                   port => 1, headers => \%auth);
    is($res->{json}{data}{output}, "4\n", 'gateway: shell form on /proxy/');

    $res = post('/alice/box/v1/file/write',
                { file => "$dir/files/gw.txt", content => 'via gateway ✓' },
                port => 1, headers => \%auth);
    is($res->{status}, 200, 'gateway: file write');
    $res = post('/alice/box/v1/file/read', { file => "$dir/files/gw.txt" },
                port => 1, headers => \%auth);
    is($res->{json}{data}{content}, 'via gateway ✓', 'gateway: file read');

    my ($head, @ev) = $t->sse_post('/alice/box/v1/shell/exec',
        { command => 'echo a; sleep 0.6; echo b' }, headers => \%auth);
    my @out = grep { $_->{event} eq 'output' } @ev;
    ok(@out == 2 && $out[1]{at} - $out[0]{at} > 0.4,
       'gateway: SSE chunks arrive as produced');
    is($ev[-1] && $ev[-1]{data}{data}{exit_code}, 0, 'gateway: SSE result');

    $res = post('/alice/box/v1/shell/exec', { command => 'echo x' }, port => 1);
    is($res->{status}, 401, 'gateway: no key, no exec');

    $t->nginx_stop;
    $t->error_log_ok;
}

$t->spawned_ok;

done_testing;
