'use strict'

// Rendezvous (highest random weight) hashing over stable slot ids: the
// JavaScript copy of src/core/hrw.rs, for the portable path. No I/O. The same key,
// seed and slots give the same choice bit for bit, so a client keeps its
// slot whichever path serves it (__test__/portable-contract.spec.js runs the
// same keys through both). 64-bit arithmetic in BigInt, masked.

const MASK = (1n << 64n) - 1n
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n

/** The splitmix64 finaliser. */
function mix64(z) {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK
  return z ^ (z >> 31n)
}

/** Up to 8 bytes of `key` from `start`, little-endian, zero-padded. */
function wordAt(key, start) {
  let word = 0n
  const end = Math.min(start + 8, key.length)
  for (let i = end - 1; i >= start; i--) word = (word << 8n) | BigInt(key[i])
  return word
}

class Rendezvous {
  /** `seed`: a BigInt (or anything `BigInt()` takes) from 0 to 2^64 - 1. */
  constructor(seed) {
    this.seed = BigInt.asUintN(64, BigInt(seed))
    /** slot -> its salt, which depends on the seed only. */
    this.salts = new Map()
  }

  /** The hash of the bytes that identify a client (`Rendezvous::key_hash`). */
  keyHash(key) {
    let hash = mix64(this.seed ^ ((BigInt(key.length) * GOLDEN_GAMMA) & MASK))
    for (let start = 0; start < key.length; start += 8) hash = (mix64(hash ^ wordAt(key, start)) + GOLDEN_GAMMA) & MASK
    return mix64(hash)
  }

  /** The weight of `slot` for a key; the highest wins. */
  score(keyHash, slot) {
    let salt = this.salts.get(slot)
    if (salt === undefined) {
      salt = mix64(((BigInt(slot) + 1n) * GOLDEN_GAMMA & MASK) ^ this.seed)
      this.salts.set(slot, salt)
    }
    return mix64(keyHash ^ salt)
  }

  /** The first choice among `candidates` (a tie, a 64-bit collision, goes to the lower slot); null when there is none. */
  pick(keyHash, candidates) {
    let best = null
    let bestScore = -1n
    for (const slot of candidates) {
      const score = this.score(keyHash, slot)
      if (score > bestScore || (score === bestScore && slot < best)) {
        best = slot
        bestScore = score
      }
    }
    return best
  }

  /** Every candidate in order of preference. */
  ranked(keyHash, candidates) {
    return candidates
      .map((slot) => ({ slot, score: this.score(keyHash, slot) }))
      .sort((a, b) => (a.score === b.score ? a.slot - b.slot : a.score > b.score ? -1 : 1))
      .map(({ slot }) => slot)
  }
}

module.exports = { Rendezvous, mix64 }
