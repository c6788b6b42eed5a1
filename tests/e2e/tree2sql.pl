#!/usr/bin/perl
# tree2sql.pl - rebuilds the replicated tables from a commit of history.git,
# independently of the C code, so a test can compare them with hub.db.
#
#   perl tree2sql.pl GITDIR REV TABLE=col1,col2,...;pk1,pk2 ...  > rows.sql
#
# Reads `git ls-tree -r REV` and every blob (one row each, lines `column: value`
# in schema order; values null, an integer, a real, a JSON-style quoted string
# or x'hex', as in common/PROTOCOL.md) and prints one INSERT per row for a
# scratch database that has the same CREATE TABLE statements as hub.db.  It
# also checks the path of every blob: <table>/<ab>/<cd>/<row name>, the shards
# being the first byte of SHA-256(row name) in hex and the row name the
# encoded primary key.  Anything that does not parse is reported on stderr
# and the exit status is 1.  Core perl only.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempfile);

my ($gitdir, $rev, @specs) = @ARGV;
die "usage: tree2sql.pl GITDIR REV TABLE=cols;pk ...\n" unless defined $rev && @specs;

my (%cols, %pk);
for (@specs) {
    my ($t, $c, $k) = /^([A-Za-z_][A-Za-z0-9_]*)=([^;]+);(.+)$/ or die "bad table spec '$_'\n";
    $cols{$t} = [split /,/, $c];
    $pk{$t}   = [split /,/, $k];
}

my $errors = 0;
sub bad { print STDERR "tree2sql: @_\n"; $errors++; }

# ---- the tree --------------------------------------------------------------
my @entries;    # [path, oid]
{
    open my $ls, '-|', 'git', '-C', $gitdir, 'ls-tree', '-r', '-z', $rev
        or die "git ls-tree: $!\n";
    local $/ = "\0";
    while (my $e = <$ls>) {
        chomp $e;
        my ($mode, $type, $oid, $path) = $e =~ /^(\d+) (\w+) ([0-9a-f]{40})\t(.*)$/s
            or do { bad "cannot parse ls-tree entry '$e'"; next };
        if ($type ne 'blob' || $mode ne '100644') { bad "$path: $type $mode, expected a 100644 blob"; next; }
        push @entries, [$path, $oid];
    }
    close $ls or die "git ls-tree $rev failed\n";
}

# ---- the blobs, in one git cat-file --batch --------------------------------
my ($lfh, $list) = tempfile(UNLINK => 1);
print $lfh "$_->[1]\n" for @entries;
close $lfh;
open my $cat, '-|', "git -C '$gitdir' cat-file --batch < '$list'" or die "git cat-file: $!\n";
binmode $cat;

sub hexof { return unpack('H*', $_[0]); }
sub sql_text { return "CAST(X'" . hexof($_[0]) . "' AS TEXT)"; }

# A JSON-style quoted string (without its quotes) -> its bytes.
sub unquote {
    my ($s, $where) = @_;
    my $out = '';
    while (length $s) {
        if ($s =~ s/^([^\\"]+)//s) { $out .= $1; next; }
        if ($s =~ s/^\\(["\\\/])//) { $out .= $1; next; }
        if ($s =~ s/^\\n//) { $out .= "\n"; next; }
        if ($s =~ s/^\\t//) { $out .= "\t"; next; }
        if ($s =~ s/^\\r//) { $out .= "\r"; next; }
        if ($s =~ s/^\\b//) { $out .= "\b"; next; }
        if ($s =~ s/^\\f//) { $out .= "\f"; next; }
        if ($s =~ s/^\\u([0-9a-fA-F]{4})//) {
            my $c = hex $1;
            if ($c < 0x80) { $out .= chr $c; }
            else { my $u = chr $c; utf8::encode($u); $out .= $u; }
            next;
        }
        bad "$where: bad escape or stray quote in string"; last;
    }
    return $out;
}

# One value as printed in a blob -> [SQL literal, its raw form for a row name].
sub value {
    my ($v, $where) = @_;
    return ['NULL', undef] if $v eq 'null';
    return [$v, $v] if $v =~ /^-?[0-9]+$/;
    return [$v, $v] if $v =~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ && $v =~ /[.eE]/;
    return ["X'$1'", 'x' . $1] if $v =~ /^x'((?:[0-9a-f]{2})*)'$/;
    if ($v =~ /^"(.*)"$/s) {
        my $b = unquote($1, $where);
        return [sql_text($b), \$b];    # a reference: text, percent-encoded in names
    }
    bad "$where: cannot parse value '$v'";
    return ['NULL', undef];
}

sub name_part {
    my ($raw) = @_;
    return undef unless defined $raw;
    return $raw unless ref $raw;    # integer, real, blob
    my $s = $$raw;
    return '%' if $s eq '';
    $s =~ s/([^A-Za-z0-9_-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

my %rows;    # table -> count
my @sql = ('BEGIN;');
for my $e (@entries) {
    my ($path, $oid) = @$e;
    my $hdr = <$cat>;
    defined $hdr or die "git cat-file ended early\n";
    my ($got, $type, $size) = $hdr =~ /^([0-9a-f]{40}) (\w+) (\d+)$/ or die "cat-file header '$hdr'\n";
    my $body = '';
    read($cat, $body, $size) == $size or die "short read of $oid\n";
    my $nl;
    read($cat, $nl, 1);
    my ($t, $shard, $name) = $path =~ m{^([^/]+)/([^/]+/[^/]+)/([^/]+)$}
        or do { bad "$path: not <table>/<ab>/<cd>/<row>"; next };
    unless ($cols{$t}) { bad "$path: table '$t' is not replicated"; next; }
    bad "$path: shard '$shard' is not ab/cd in hex" unless $shard =~ m{^[0-9a-f]{2}/[0-9a-f]{2}$};
    my $h = sha256_hex($name);
    bad "$path: shard is not the first two bytes of SHA-256(row name)"
        unless substr($h, 0, 2) . '/' . substr($h, 2, 2) eq $shard;
    bad "$path: blob does not end with a newline" unless $body =~ /\n\z/;
    my @lines = split /\n/, $body, -1;
    pop @lines;
    my @want = @{ $cols{$t} };
    if (@lines != @want) { bad "$path: " . scalar(@lines) . " lines for " . scalar(@want) . " columns"; next; }
    my (@lits, %raw);
    for my $i (0 .. $#want) {
        my ($c, $v) = $lines[$i] =~ /^([A-Za-z_][A-Za-z0-9_]*): (.*)$/s
            or do { bad "$path: line '$lines[$i]' is not 'column: value'"; next };
        bad "$path: line " . ($i + 1) . " is column '$c', schema order wants '$want[$i]'" if $c ne $want[$i];
        my $val = value($v, "$path $c");
        push @lits, $val->[0];
        $raw{$c} = $val->[1];
    }
    next if @lits != @want;
    # The row name is the encoded key (names over 200 bytes are cut: prefix~sha256).
    my @parts = map { name_part($raw{$_}) } @{ $pk{$t} };
    if (grep { !defined } @parts) { bad "$path: a key column is null"; }
    else {
        my $full = join ',', @parts;
        if (length($full) <= 200) { bad "$path: row name is not the encoded key '$full'" if $name ne $full; }
        else {
            my ($pre, $h) = $name =~ /^(.*)~([0-9a-f]{64})$/s;
            bad "$path: long key not cut to prefix~sha256"
                unless defined $h && $h eq sha256_hex($full) && length($pre) >= 126 && length($pre) <= 128
                && substr($full, 0, length $pre) eq $pre;
        }
    }
    $rows{$t}++;
    push @sql, sprintf('INSERT INTO "%s" (%s) VALUES (%s);', $t, join(', ', map { qq("$_") } @want), join(', ', @lits));
}
close $cat;
push @sql, 'COMMIT;';
print "$_\n" for @sql;
exit($errors ? 1 : 0);
