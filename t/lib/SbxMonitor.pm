package SbxMonitor;

# Redis MONITOR seen from a test: every command with the client that sent
# it, the scripts loaded (SCRIPT LOAD), and each script run (EVAL or
# EVALSHA) with its KEYS, its ARGV and the commands it ran: the "lua"
# lines that follow its own line (a script runs alone, so nothing else
# comes between).

use strict;
use warnings;

use Digest::SHA qw(sha1_hex);
use Time::HiRes qw(time sleep);

# redis-cli monitor, in $t's process table as $name; undef if no "OK"
sub start {
    my ($class, $t, $name) = @_;
    $name //= 'monitor';
    $t->spawn($name, {}, 'redis-cli', '-h', '127.0.0.1',
              '-p', $t->port('redis'), 'monitor');
    my $self = bless { t => $t, name => $name }, $class;
    my $until = time + 10;
    sleep 0.05 while time < $until && $self->text !~ /^OK/m;
    return $self->text =~ /^OK/m ? $self : undef;
}

sub text { $_[0]{t}->read_file("$_[0]{name}.out") // '' }

sub stop { $_[0]{t}->reap($_[0]{name}) }

my %ESC = (n => "\n", r => "\r", t => "\t", a => "\a", b => "\b");
sub _unescape { defined $_[1] ? chr hex $_[1] : $ESC{ $_[0] } // $_[0] }

# a MONITOR line: time [db client] "arg" ... (sdscatrepr's escapes)
sub tokens {
    my ($line) = @_;
    my ($client, $rest) = $line =~ /^\d+\.\d+ \[\d+ (\S+)\] (.*)$/ or return;
    my @a;
    while ($rest =~ /\G"((?:[^"\\]|\\.)*)" ?/gc) {
        (my $v = $1) =~ s{\\(x([0-9a-fA-F]{2})|.)}{_unescape($1, $2)}ge;
        push @a, $v;
    }
    return ($client, @a);
}

# { text => { sha => script }, loaded => { sha => 1 } (by SCRIPT LOAD),
#   cmds => [ { client, args } ... ],
#   runs => [ { client, sha, cmd (evalsha|eval), keys, argv, cmds, at } ] }
# (at: the run's index in cmds; a run's cmds are its "lua" lines)
sub parse {
    my ($self) = @_;
    my (%text, %loaded, @cmds, @runs, $run);
    for my $line (split /\n/, $self->text) {
        my ($client, @a) = tokens($line) or next;
        my $cmd = lc($a[0] // '');
        if ($client eq 'lua') {
            push @{ $run->{cmds} }, \@a if $run;
            next;
        }
        $run = undef;
        push @cmds, { client => $client, args => \@a };
        if ($cmd eq 'script' && lc($a[1] // '') eq 'load') {
            $text{ sha1_hex($a[2]) } = $a[2];
            $loaded{ sha1_hex($a[2]) } = 1;
        } elsif ($cmd eq 'evalsha' || $cmd eq 'eval') {
            my $n = $a[2];
            $run = { client => $client, cmd => $cmd,
                     sha => $cmd eq 'eval' ? sha1_hex($a[1]) : $a[1],
                     keys => [ @a[3 .. 2 + $n] ],
                     argv => [ @a[3 + $n .. $#a] ], cmds => [], at => $#cmds };
            $text{ $run->{sha} } = $a[1] if $cmd eq 'eval';
            push @runs, $run;
        }
    }
    return { text => \%text, loaded => \%loaded, cmds => \@cmds,
             runs => \@runs };
}

# the keys a command touches, as Redis itself says (COMMAND GETKEYS)
sub keys_of {
    my ($self, $c) = @_;
    my $sig = join "\0", @$c;
    return $self->{getkeys}{$sig} //=
        eval { $self->{t}->redis('COMMAND', 'GETKEYS', @$c) } // [];
}

1;
