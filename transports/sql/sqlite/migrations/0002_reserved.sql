-- Reserved for the migration of another branch (error history, operator actions): a no-op.
SELECT 1;
