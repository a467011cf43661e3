//! Reading a password from the controlling terminal with echo off.

use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::AsRawFd;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{Password, PASSWORD_ENV};

/// Shows `prompt` on `/dev/tty` and reads one line without echo.
pub(crate) fn read_password(prompt: &str) -> Result<Password> {
    let no_tty = || Error::NoPassword(PASSWORD_ENV.to_owned());
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_tty())?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(no_tty());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: fd is open and quiet is a valid termios.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut out = &tty;
    let _ = out.write_all(prompt.as_bytes());
    let _ = out.flush();
    let mut line = Zeroizing::new(String::new());
    let read = BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|_| no_tty())?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(Password::new(trimmed))
}
