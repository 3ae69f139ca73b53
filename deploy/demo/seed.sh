#!/bin/sh
# One-shot of deploy/docker-compose.yml (service demo-seed, the Dovecot image, as root): gives
# the demo user alice a mailbox on the "old" server before it starts, written directly as a
# Maildir++ tree (the layout old.conf uses): sixty messages in seven folders, with a
# special-use folder under a localized name ("Sent Items"), a hierarchy (Archive/2019), a name
# that needs modified UTF-7 ("Übersicht"), flags, dates from 2019 on, a message without a
# Message-ID, a genuine duplicate, and one message of about 300 KB.
#
# Maildir keeps flags in the file name (":2,FS") and the received date (IMAP INTERNALDATE) in
# the file's mtime; Dovecot indexes the files when alice first logs in. Runs once: a mailbox
# that exists is left alone. Delete the service (and old's `depends_on` on it) to start empty.
set -eu

home=/srv/mail/alice
[ -d "$home" ] && { echo "demo-seed: alice already has a mailbox; nothing to do"; exit 0; }
work=/srv/mail/.alice.seeding
rm -rf "$work"
maildir=$work/Maildir

n=0
# message FOLDER EPOCH FLAGS SUBJECT [FROM] [BODY]: one message file. FOLDER is "" for INBOX, or
# the Maildir++ directory name (".Archive.2019"); FLAGS are Maildir letters (D F R S T).
message() {
  n=$((n + 1))
  dir="$maildir/$1"
  mkdir -p "$dir/cur" "$dir/new" "$dir/tmp"
  [ -n "$1" ] && : >"$dir/maildirfolder"
  file="$2.M${n}P1.demo-seed:2,$3"
  {
    [ -n "${NO_MESSAGE_ID:-}" ] || printf 'Message-ID: <demo-%d@old.example>\n' "$n"
    printf 'Date: %s\n' "$(date -u -R -d "@$2")"
    printf 'From: %s\n' "${5:-Bob Example <bob@old.example>}"
    printf 'To: Alice Example <alice@old.example>\n'
    printf 'Subject: %s\n' "$4"
    printf 'MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n'
    printf 'Content-Transfer-Encoding: 8bit\n\n'
    printf '%s\n' "${6:-Message $n of the mailferry demo mailbox.}"
  } >"$dir/tmp/$file"
  touch -d "@$2" "$dir/tmp/$file"
  mv "$dir/tmp/$file" "$dir/cur/$file"
}

day=86400
t=1548979200 # 2019-02-01
for i in $(seq 1 10); do
  message .Archive.2019 $((t + i * 9 * day)) S "Quarterly numbers, part $i"
done
t=1577836800 # 2020-01-01
for i in $(seq 1 5); do
  message .Archive $((t + i * 40 * day)) S "Project notes $i" "Carol Example <carol@old.example>"
done
message .Archive $((t + 300 * day)) S "Scans from the archive (about 300 KB)" "" \
  "$(head -c 300000 /dev/zero | tr '\0' 'x' | fold -w 76)"
t=1672531200 # 2023-01-01
for i in $(seq 1 4); do
  message ".&ANw-bersicht" $((t + i * 20 * day)) S \
    "=?utf-8?q?Zusammenfassung_f=C3=BCr_Woche_$i?=" "Dora Beispiel <dora@old.example>" \
    "Grüße aus der Übersicht, Nachricht $i."
done
t=1704067200 # 2024-01-01
for i in $(seq 1 8); do
  message ".Sent Items" $((t + i * 11 * day)) S "Re: Project notes $i" \
    "Alice Example <alice@old.example>"
done
message .Drafts $((t + 200 * day)) DS "Unfinished reply" "Alice Example <alice@old.example>"
message .Drafts $((t + 201 * day)) DS "Another draft" "Alice Example <alice@old.example>"
for i in $(seq 1 3); do
  message ".Deleted Items" $((t + i * 7 * day)) S "Newsletter $i" "News <news@old.example>"
done
t=1735689600 # 2025-01-01
for i in $(seq 1 24); do
  case $i in
    3 | 11 | 17) flags=FS ;; # flagged
    5 | 8) flags=RS ;;       # answered
    2[2-4]) flags= ;;        # the newest three are unread
    *) flags=S ;;
  esac
  message "" $((t + i * 5 * day)) "$flags" "Hello Alice, message $i"
done
NO_MESSAGE_ID=1
message "" $((t + 130 * day)) S "A message without a Message-ID"
unset NO_MESSAGE_ID
# A genuine duplicate: the same message twice in INBOX, and so twice on the target too.
message "" $((t + 131 * day)) S "Sent twice by mistake"
cp -p "$maildir/cur/$file" "$maildir/cur/$((t + 131 * day)).M$((n + 1))P1.demo-seed:2,S"

# Dovecot runs mail processes as vmail (uid/gid 1000 in the dovecot/dovecot image).
chown -R 1000:1000 "$work"
mv "$work" "$home"
echo "demo-seed: $(find "$home/Maildir" -path '*/cur/*' -type f | wc -l) messages for alice"
