-- fct_lookalike_seed: a customer who withdrew consent or is do-not-contact is never in the
-- look-alike seed, whatever their value.
select seed.customer_id
from {{ ref('fct_lookalike_seed') }} as seed
left join {{ ref('dim_customers') }} as customers
    on seed.customer_id = customers.customer_id
where customers.customer_id is null
    or not customers.is_contactable
    or customers.consent_withdrawn
    or customers.do_not_contact
