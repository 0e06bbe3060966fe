import { Schema } from "effect"

/** Postgres text cannot hold U+0000: refused where it enters, as a 422 naming the field. */
export const isWithoutNul = Schema.makeFilter((text: string) => !text.includes("\u0000") || "must not contain U+0000")
