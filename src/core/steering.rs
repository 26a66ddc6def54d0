//! The classic BPF programs of kernel steering, and what they compute. No
//! I/O: `crate::reuseport` attaches them to its sockets.
//!
//! [`steering_program`] picks a listening socket of an `SO_REUSEPORT` group
//! by the client's source address; [`kernel_slot`] computes the same in Rust,
//! so tests (and anyone) can tell which slot the kernel will pick.
//! [`refusing_program`] drops new connection requests at a closing socket.

use std::net::IpAddr;

const MIX_1: u32 = 0x9e37_79b1;
const MIX_2: u32 = 0x85eb_ca6b;

/// One classic BPF instruction (layout of the kernel's `struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Instruction {
  pub code: u16,
  pub jt: u8,
  pub jf: u8,
  pub k: u32,
}

const fn stmt(code: u32, k: u32) -> Instruction {
  Instruction { code: code as u16, jt: 0, jf: 0, k }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> Instruction {
  Instruction { code: code as u16, jt, jf, k }
}

/// `SKF_NET_OFF + offset`: a load relative to the network (IP) header.
const fn net(offset: u32) -> u32 {
  (libc::SKF_NET_OFF as u32).wrapping_add(offset)
}

/// The steering program: IPv4 source, or the XOR of the four words of an
/// IPv6 source, xored with the seed, mixed, modulo `slots`.
pub fn steering_program(slots: u32, seed: u32) -> Vec<Instruction> {
  use libc::{
    BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MISC, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH,
    BPF_TAX, BPF_W, BPF_X, BPF_XOR,
  };
  debug_assert!(slots >= 1);
  vec![
    stmt(BPF_LD | BPF_B | BPF_ABS, net(0)),    // 0: version << 4 | ihl
    stmt(BPF_ALU | BPF_RSH | BPF_K, 4),        // 1
    jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 11), // 2: IPv6 -> 3, else -> 14
    stmt(BPF_LD | BPF_W | BPF_ABS, net(8)),    // 3: IPv6 source, 4 words xored
    stmt(BPF_MISC | BPF_TAX, 0),
    stmt(BPF_LD | BPF_W | BPF_ABS, net(12)),
    stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
    stmt(BPF_MISC | BPF_TAX, 0),
    stmt(BPF_LD | BPF_W | BPF_ABS, net(16)),
    stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
    stmt(BPF_MISC | BPF_TAX, 0),
    stmt(BPF_LD | BPF_W | BPF_ABS, net(20)),
    stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
    stmt(BPF_JMP | BPF_JA, 1),               // 13: -> 15
    stmt(BPF_LD | BPF_W | BPF_ABS, net(12)), // 14: IPv4 source
    stmt(BPF_ALU | BPF_XOR | BPF_K, seed),   // 15: mix
    stmt(BPF_ALU | BPF_MUL | BPF_K, MIX_1),
    stmt(BPF_MISC | BPF_TAX, 0),
    stmt(BPF_ALU | BPF_RSH | BPF_K, 16),
    stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
    stmt(BPF_ALU | BPF_MUL | BPF_K, MIX_2),
    stmt(BPF_MISC | BPF_TAX, 0),
    stmt(BPF_ALU | BPF_RSH | BPF_K, 13),
    stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
    stmt(BPF_ALU | BPF_MOD | BPF_K, slots),
    stmt(BPF_RET | libc::BPF_A, 0),
  ]
}

/// The slot the kernel picks for a client: what [`steering_program`] computes.
pub fn kernel_slot(client: IpAddr, slots: u32, seed: u32) -> u32 {
  let word = match client.to_canonical() {
    IpAddr::V4(v4) => u32::from_be_bytes(v4.octets()),
    IpAddr::V6(v6) => {
      let octets = v6.octets();
      (0..4).fold(0u32, |acc, i| {
        acc ^ u32::from_be_bytes([octets[4 * i], octets[4 * i + 1], octets[4 * i + 2], octets[4 * i + 3]])
      })
    }
  };
  let mut a = (word ^ seed).wrapping_mul(MIX_1);
  a ^= a >> 16;
  a = a.wrapping_mul(MIX_2);
  a ^= a >> 13;
  a % slots.max(1)
}

/// A socket filter for a listening TCP socket that drops new connection
/// requests (a SYN without ACK) and lets everything else through: the final
/// ACKs of handshakes under way still complete them.
pub fn refusing_program() -> Vec<Instruction> {
  use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET};
  const TCP_FLAGS: u32 = 13;
  const SYN: u32 = 0x02;
  const ACK: u32 = 0x10;
  vec![
    stmt(BPF_LD | BPF_B | BPF_ABS, TCP_FLAGS),  // 0: the TCP header's flags
    stmt(BPF_ALU | BPF_AND | BPF_K, SYN | ACK), // 1
    jump(BPF_JMP | BPF_JEQ | BPF_K, SYN, 0, 1), // 2: a SYN alone -> 3, else -> 4
    stmt(BPF_RET | BPF_K, 0),                   // 3: drop
    stmt(BPF_RET | BPF_K, u32::MAX),            // 4: keep
  ]
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::net::Ipv4Addr;

  #[test]
  fn instruction_has_the_kernel_layout() {
    assert_eq!(std::mem::size_of::<Instruction>(), std::mem::size_of::<libc::sock_filter>());
  }

  #[test]
  fn sequential_loopback_clients_spread_over_slots() {
    let mut counts = [0usize; 3];
    for last in 2u8..=250 {
      counts[kernel_slot(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 3, 0) as usize] += 1;
    }
    assert!(counts.iter().all(|&count| count > 50), "{counts:?}");
  }
}
